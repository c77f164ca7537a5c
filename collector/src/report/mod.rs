//! Report renderers: the inventory and the reconciliation as an aligned text table, CSV,
//! JSON, HTML, and OCSF JSON lines for SIEMs. No SQL here: reports render what `join` built.
//!
//! Every report is first laid out as [`Sheet`]s of typed [`Cell`]s, so the renderers agree
//! on columns and only the encoding differs. CSV follows RFC 4180 (CRLF, quotes doubled) and
//! neutralises text cells that a spreadsheet would evaluate (leading `=`, `+`, `-`, `@`, tab,
//! CR or NUL get a leading `'`, OWASP ASVS 5.0 V1.2.10); money and counts are numeric cells
//! and are written as plain numbers, so a refund stays `-12.50`.

use aiscout_signatures::RiskFact;
use aiscout_wire::{InventoryRow, Money, Reconciliation};

use crate::model::calendar::ymd;

pub mod ocsf;

/// An output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// RFC 4180 CSV with formula-injection protection.
    Csv,
    /// A standalone HTML page.
    Html,
    /// Pretty JSON of the `aiscout_wire` types.
    Json,
    /// OCSF JSON lines (inventory only).
    Ocsf,
    /// Aligned text for a terminal.
    Table,
}

impl Format {
    /// The format with this name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "csv" => Format::Csv,
            "html" => Format::Html,
            "json" => Format::Json,
            "ocsf" => Format::Ocsf,
            "table" => Format::Table,
            _ => return None,
        })
    }
}

/// One cell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    /// Free text (neutralised in CSV).
    Text(String),
    /// A count.
    Int(i64),
    /// Minor units of a currency, written as a decimal number.
    Money(Money),
    /// Unix seconds, written as `YYYY-MM-DD`.
    Day(i64),
    /// Unix seconds, written as RFC 3339 UTC.
    Time(i64),
    /// Nothing.
    Empty,
}

impl Cell {
    fn text(&self) -> String {
        match self {
            Cell::Text(t) => t.clone(),
            Cell::Int(n) => n.to_string(),
            Cell::Money(m) => m.amount.clone(),
            Cell::Day(t) => ymd(*t),
            Cell::Time(t) => rfc3339(*t),
            Cell::Empty => String::new(),
        }
    }

    fn numeric(&self) -> bool {
        matches!(self, Cell::Int(_) | Cell::Money(_))
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(secs: i64) -> String {
    aiscout_wire::UnixSecs(secs).rfc3339()
}

fn text(s: impl Into<String>) -> Cell {
    Cell::Text(s.into())
}

fn count(n: u64) -> Cell {
    Cell::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// A titled table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sheet {
    /// Title (a section name).
    pub title: String,
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, each as long as `columns`.
    pub rows: Vec<Vec<Cell>>,
}

/// Currencies present in a set of money lists, sorted.
fn currencies<'a>(lists: impl Iterator<Item = &'a Vec<Money>>) -> Vec<String> {
    let mut set: Vec<String> = lists.flatten().map(|m| m.currency.clone()).collect();
    set.sort_unstable();
    set.dedup();
    set
}

fn amount_in(list: &[Money], currency: &str) -> Cell {
    list.iter().find(|m| m.currency == currency).map_or(Cell::Empty, |m| Cell::Money(m.clone()))
}

/// The inventory as one sheet: money columns are one per currency (`expense_spend_usd`), so
/// amounts stay numbers.
pub fn inventory_sheet(rows: &[InventoryRow]) -> Sheet {
    type MoneyOf = fn(&InventoryRow) -> &Vec<Money>;
    let money_cols: [(&str, MoneyOf); 3] = [
        ("expense_spend", |r| &r.expense_spend),
        ("gateway_spend", |r| &r.gateway_spend),
        ("annualized_cost", |r| &r.annualized_cost),
    ];
    let mut columns: Vec<String> = [
        "product",
        "name",
        "vendor",
        "category",
        "status",
        "sources",
        "devices",
        "users",
        "payers",
        "departments",
        "first_seen",
        "last_seen",
        "subscriptions",
        "mcp_flags",
        "risk_score",
    ]
    .map(str::to_owned)
    .to_vec();
    // One column per risk fact, `risk_soc2` ..., in the catalog's fact order.
    columns.extend(RiskFact::ALL.iter().map(|f| format!("risk_{}", f.key())));
    let mut money_layout = Vec::new();
    for (name, get) in money_cols {
        for c in currencies(rows.iter().map(get)) {
            columns.push(format!("{name}_{}", c.to_lowercase()));
            money_layout.push((get, c));
        }
    }
    // Gateway bypass (issue 17), added last so that earlier columns keep their places.
    columns.extend(
        ["bypass_devices", "bypass_people", "bypass_processes", "bypass_gateways"]
            .map(str::to_owned),
    );
    let rows = rows
        .iter()
        .map(|r| {
            let mut cells = vec![
                text(&r.product),
                text(&r.name),
                text(&r.vendor),
                text(&r.category),
                text(r.status.as_str()),
                text(r.sources.join(" ")),
                count(r.devices),
                count(r.users),
                count(r.payers),
                text(r.departments.join("; ")),
                Cell::Time(r.first_seen),
                Cell::Time(r.last_seen),
                count(r.subscriptions),
                text(r.mcp_flags.join(" ")),
                Cell::Int(i64::from(r.risk_score)),
            ];
            cells.extend(RiskFact::ALL.iter().map(|f| {
                let v = r.risk_facts.iter().find(|v| v.fact == f.key());
                text(v.map_or("unknown", |v| v.value.as_str()))
            }));
            cells.extend(money_layout.iter().map(|(get, c)| amount_in(get(r), c)));
            cells.extend([
                count(r.bypass_devices),
                count(r.bypass_people),
                text(r.bypass_processes.join(" ")),
                text(r.bypass_gateways.join(" ")),
            ]);
            cells
        })
        .collect();
    Sheet { title: "Inventory".into(), columns, rows }
}

fn cols(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn currency_of(m: &Money) -> Cell {
    text(&m.currency)
}

/// The reconciliation as one sheet per section.
pub fn reconcile_sheets(r: &Reconciliation) -> Vec<Sheet> {
    let mut out = Vec::new();
    out.push(Sheet {
        title: "1. Paid but not sanctioned".into(),
        columns: cols(&[
            "product",
            "name",
            "status",
            "payer",
            "department",
            "currency",
            "amount",
            "lines",
            "first",
            "last",
        ]),
        rows: r
            .paid_not_sanctioned
            .iter()
            .map(|p| {
                vec![
                    text(&p.product),
                    text(&p.name),
                    text(p.status.as_str()),
                    text(&p.payer),
                    text(&p.department),
                    currency_of(&p.spend),
                    Cell::Money(p.spend.clone()),
                    count(p.lines),
                    Cell::Day(p.first_charge),
                    Cell::Day(p.last_charge),
                ]
            })
            .collect(),
    });
    out.push(Sheet {
        title: "2. Used but not paid".into(),
        columns: cols(&["product", "name", "status", "devices", "users", "departments", "last"]),
        rows: r
            .used_not_paid
            .iter()
            .map(|u| {
                vec![
                    text(&u.product),
                    text(&u.name),
                    text(u.status.as_str()),
                    count(u.devices),
                    count(u.users),
                    text(u.departments.join("; ")),
                    Cell::Day(u.last_seen),
                ]
            })
            .collect(),
    });
    out.push(Sheet {
        title: format!("3. Sanctioned and paid but idle ({} days)", r.idle_days),
        columns: cols(&[
            "product",
            "name",
            "payer",
            "department",
            "cadence",
            "currency",
            "amount",
            "first",
            "last",
            "last_used",
        ]),
        rows: r
            .idle_subscriptions
            .iter()
            .map(|i| {
                vec![
                    text(&i.product),
                    text(&i.name),
                    text(&i.payer),
                    text(&i.department),
                    text(&i.cadence),
                    currency_of(&i.seat_price),
                    Cell::Money(i.seat_price.clone()),
                    Cell::Day(i.since),
                    Cell::Day(i.last_charge),
                    i.last_used.map_or_else(|| text("never"), Cell::Day),
                ]
            })
            .collect(),
    });
    out.push(Sheet {
        title: "4. Duplicate individual subscriptions".into(),
        columns: cols(&[
            "product",
            "name",
            "count",
            "payer",
            "currency",
            "amount",
            "team_plan",
            "team_seats",
            "team_annual",
            "saving",
        ]),
        rows: r
            .duplicate_subscriptions
            .iter()
            .map(|d| {
                vec![
                    text(&d.product),
                    text(&d.name),
                    count(u64::try_from(d.payers.len()).unwrap_or(u64::MAX)),
                    text(d.payers.join("; ")),
                    currency_of(&d.current_annual),
                    Cell::Money(d.current_annual.clone()),
                    d.team_plan.as_ref().map_or(Cell::Empty, text),
                    d.team_seats.map_or(Cell::Empty, count),
                    d.team_annual.clone().map_or(Cell::Empty, Cell::Money),
                    d.saving.clone().map_or(Cell::Empty, Cell::Money),
                ]
            })
            .collect(),
    });
    out.push(Sheet {
        title: "5. Gateway and shadow spend by department and month".into(),
        columns: cols(&["department", "month", "currency", "gateway", "shadow"]),
        rows: r
            .gateway_vs_shadow
            .iter()
            .map(|g| {
                vec![
                    text(&g.department),
                    text(&g.month),
                    currency_of(&g.gateway),
                    Cell::Money(g.gateway.clone()),
                    Cell::Money(g.shadow.clone()),
                ]
            })
            .collect(),
    });
    out.push(Sheet {
        title: "Candidates (unmatched AI-looking expense lines)".into(),
        columns: cols(&["detail", "payer", "department", "currency", "amount", "lines", "last"]),
        rows: r
            .candidates
            .iter()
            .map(|c| {
                vec![
                    text(&c.descriptor),
                    text(&c.payer),
                    text(&c.department),
                    currency_of(&c.spend),
                    Cell::Money(c.spend.clone()),
                    count(c.lines),
                    Cell::Day(c.last_charge),
                ]
            })
            .collect(),
    });
    out.push(Sheet {
        title: "Consumer plans (personal subscriptions, business seat proposed)".into(),
        columns: cols(&[
            "product",
            "name",
            "payer",
            "department",
            "plan",
            "plan_price",
            "period",
            "currency",
            "amount",
            "lines",
            "last",
            "business_plan",
            "business_price",
            "business_period",
            "business_min_seats",
        ]),
        rows: r
            .consumer_plans
            .iter()
            .map(|c| {
                vec![
                    text(&c.product),
                    text(&c.name),
                    text(&c.payer),
                    text(&c.department),
                    text(&c.plan),
                    Cell::Money(c.plan_price.clone()),
                    text(&c.period),
                    currency_of(&c.spend),
                    Cell::Money(c.spend.clone()),
                    count(c.lines),
                    Cell::Day(c.last_charge),
                    c.business_plan.as_ref().map_or(Cell::Empty, text),
                    c.business_price.clone().map_or(Cell::Empty, Cell::Money),
                    c.business_period.as_ref().map_or(Cell::Empty, text),
                    c.business_min_seats.map_or(Cell::Empty, |m| count(u64::from(m))),
                ]
            })
            .collect(),
    });
    out.push(Sheet {
        title: "Gateway bypass (provider APIs reached without the sanctioned gateway)".into(),
        columns: cols(&[
            "product",
            "name",
            "device",
            "host_id",
            "person",
            "department",
            "process",
            "api_host",
            "gateway_id",
            "gateway_host",
            "first_seen",
            "last_seen",
            "count",
        ]),
        rows: r
            .gateway_bypass
            .iter()
            .map(|b| {
                vec![
                    text(&b.product),
                    text(&b.name),
                    text(&b.hostname),
                    text(&b.host_id),
                    text(&b.person),
                    text(&b.department),
                    text(&b.process),
                    text(&b.host),
                    text(&b.gateway),
                    text(&b.gateway_host),
                    Cell::Time(b.first_seen),
                    Cell::Time(b.last_seen),
                    count(b.count),
                ]
            })
            .collect(),
    });
    out
}

/// Several sheets as one, with a leading `section` column and the union of their columns,
/// for a single CSV that filters by section in a spreadsheet.
pub fn long(sheets: &[Sheet]) -> Sheet {
    let mut columns = vec!["section".to_owned()];
    for s in sheets {
        for c in &s.columns {
            if !columns.contains(c) {
                columns.push(c.clone());
            }
        }
    }
    let mut rows = Vec::new();
    for s in sheets {
        for r in &s.rows {
            let mut row = vec![Cell::Empty; columns.len()];
            if let Some(first) = row.first_mut() {
                *first = text(&s.title);
            }
            for (c, cell) in s.columns.iter().zip(r) {
                if let Some(slot) = columns.iter().position(|x| x == c).and_then(|i| row.get_mut(i))
                {
                    *slot = cell.clone();
                }
            }
            rows.push(row);
        }
    }
    Sheet { title: "Reconciliation".into(), columns, rows }
}

/// A text cell made safe for spreadsheets: a leading formula character gets a `'`.
pub fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r' | '\0') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

fn csv_field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// RFC 4180 CSV (CRLF line ends) of one sheet, header first.
pub fn csv(sheet: &Sheet) -> String {
    let mut out = String::new();
    for (i, c) in sheet.columns.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(&mut out, &neutralise(c));
    }
    out.push_str("\r\n");
    for row in &sheet.rows {
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let t = cell.text();
            if cell.numeric() {
                out.push_str(&t);
            } else {
                csv_field(&mut out, &neutralise(&t));
            }
        }
        out.push_str("\r\n");
    }
    out
}

/// Aligned text, one block per sheet.
pub fn table(sheets: &[Sheet]) -> String {
    let mut out = String::new();
    for (n, s) in sheets.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        if sheets.len() > 1 {
            out.push_str(&s.title);
            out.push('\n');
        }
        if s.rows.is_empty() {
            out.push_str("  (none)\n");
            continue;
        }
        let cells: Vec<Vec<String>> = s
            .rows
            .iter()
            .map(|r| r.iter().map(|c| c.text().replace(['\n', '\r', '\t'], " ")).collect())
            .collect();
        let widths: Vec<usize> = s
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                cells
                    .iter()
                    .map(|r| r.get(i).map_or(0, |v| v.chars().count()))
                    .chain([c.chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |out: &mut String, vals: &mut dyn Iterator<Item = (&str, bool)>| {
            let mut l = String::new();
            for ((v, right), w) in vals.zip(&widths) {
                let pad = w.saturating_sub(v.chars().count());
                if right {
                    l.push_str(&" ".repeat(pad));
                    l.push_str(v);
                } else {
                    l.push_str(v);
                    l.push_str(&" ".repeat(pad));
                }
                l.push_str("  ");
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        line(&mut out, &mut s.columns.iter().map(|c| (c.as_str(), false)));
        for (r, raw) in cells.iter().zip(&s.rows) {
            line(&mut out, &mut r.iter().zip(raw).map(|(v, c)| (v.as_str(), c.numeric())));
        }
    }
    out
}

pub(crate) fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A standalone HTML page with one table per sheet; every value is escaped.
pub fn html(title: &str, sheets: &[Sheet]) -> String {
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str(&format!("<title>{}</title>", escape_html(title)));
    out.push_str(
        "<style>body{font-family:sans-serif}table{border-collapse:collapse;margin-bottom:2em}\
         td,th{border:1px solid #ccc;padding:2px 6px}td.n{text-align:right}</style></head><body>\n",
    );
    out.push_str(&format!("<h1>{}</h1>\n", escape_html(title)));
    for s in sheets {
        if sheets.len() > 1 {
            out.push_str(&format!("<h2>{}</h2>\n", escape_html(&s.title)));
        }
        out.push_str("<table><thead><tr>");
        for c in &s.columns {
            out.push_str(&format!("<th>{}</th>", escape_html(c)));
        }
        out.push_str("</tr></thead><tbody>\n");
        for r in &s.rows {
            out.push_str("<tr>");
            for c in r {
                let class = if c.numeric() { " class=\"n\"" } else { "" };
                out.push_str(&format!("<td{class}>{}</td>", escape_html(&c.text())));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sheet(cells: Vec<Cell>) -> Sheet {
        let columns = (0..cells.len()).map(|i| format!("c{i}")).collect();
        Sheet { title: "t".into(), columns, rows: vec![cells] }
    }

    fn usd(minor: i64) -> Cell {
        Cell::Money(Money {
            currency: "USD".into(),
            amount_minor: minor,
            amount: crate::model::money::format_minor(minor, "USD"),
        })
    }

    #[test]
    fn csv_neutralises_formula_text_but_keeps_amounts_numeric() {
        let out = csv(&sheet(vec![
            text("=HYPERLINK(\"http://x\")"),
            text("+1"),
            text("-cmd"),
            text("@SUM(A1)"),
            text("\tx"),
            text("\rx"),
            text("plain, with comma"),
            usd(-1250),
            Cell::Int(-3),
        ]));
        let body = out.lines().nth(1).unwrap();
        assert_eq!(
            body,
            "\"'=HYPERLINK(\"\"http://x\"\")\",'+1,'-cmd,'@SUM(A1),'\tx,\"'\rx\",\"plain, with comma\",-12.50,-3"
        );
        assert!(out.ends_with("\r\n"));
    }

    #[test]
    fn html_escapes_every_value() {
        let out = html("<t>", &[sheet(vec![text("<script>alert('x')</script>&")])]);
        assert!(out.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;"));
        assert!(!out.contains("<script>"));
    }

    #[test]
    fn long_sheet_unions_columns_under_a_section_column() {
        let a = Sheet {
            title: "A".into(),
            columns: cols(&["x", "y"]),
            rows: vec![vec![text("1"), text("2")]],
        };
        let b = Sheet {
            title: "B".into(),
            columns: cols(&["y", "z"]),
            rows: vec![vec![text("3"), text("4")]],
        };
        let l = long(&[a, b]);
        assert_eq!(l.columns, ["section", "x", "y", "z"]);
        assert_eq!(csv(&l), "section,x,y,z\r\nA,1,2,\r\nB,,3,4\r\n");
    }

    #[test]
    fn rfc3339_is_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_793_536_200), "2026-11-01T12:30:00Z");
    }
}
