//! Endpoint formats: Microsoft Defender for Endpoint indicators (CSV) and osquery/Fleet policy
//! queries (JSON).

use serde_json::{Value, json};

use super::{Blocked, Plan, Status};

/// The columns of Defender's indicator import file, in the order of its sample CSV.
pub const DEFENDER_COLUMNS: [&str; 12] = [
    "IndicatorType",
    "IndicatorValue",
    "ExpirationTime",
    "Action",
    "Severity",
    "Title",
    "Description",
    "RecommendedActions",
    "RbacGroups",
    "Category",
    "MitreTechniques",
    "GenerateAlert",
];

/// Defender's portal imports at most this many indicators per file: "Only 500 indicators can
/// be uploaded for each batch" (Microsoft Learn, Defender for Endpoint, "Manage indicators",
/// Import; the import API's batch limit is also 500). Longer exports are split into pages of at
/// most this many rows, each with the header (`defender_pages`).
pub const DEFENDER_ROWS_PER_FILE: usize = 500;

/// A CSV cell: a leading `=`, `+`, `-` or `@` is neutralised so a spreadsheet opening the
/// file never evaluates it (the same rule as the reports).
fn cell(text: &str) -> String {
    crate::report::neutralise(&super::one_line(text)).into_owned()
}

fn csv_line(out: &mut String, cells: &[String]) {
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if c.contains([',', '"', '\r', '\n']) {
            out.push('"');
            out.push_str(&c.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(c);
        }
    }
    out.push_str("\r\n");
}

/// Defender for Endpoint indicators: one `DomainName` row per blocked domain (`Block` for
/// blocked products, `Warn` for unsanctioned ones, which the user may bypass) and an
/// `Allowed` row per allowed name below a blocked one; the whole file.
pub(super) fn defender(plan: &Plan) -> (String, Vec<String>) {
    let rows = defender_rows(plan);
    let mut notes = Vec::new();
    if rows.len() > DEFENDER_ROWS_PER_FILE {
        notes.push(format!(
            "defender-indicators: {} indicators; Defender imports at most \
             {DEFENDER_ROWS_PER_FILE} per file: write numbered files with --out DIR, or fetch \
             them with the API's page parameter ({} pages)",
            rows.len(),
            rows.len().div_ceil(DEFENDER_ROWS_PER_FILE)
        ));
    }
    (defender_file(&rows), notes)
}

/// The Defender indicators in files of at most [`DEFENDER_ROWS_PER_FILE`] rows, each with the
/// header, in the order of the whole file; always at least one (an empty export is a header).
pub(super) fn defender_pages(plan: &Plan) -> Vec<String> {
    let rows = defender_rows(plan);
    if rows.is_empty() {
        return vec![defender_file(&[])];
    }
    rows.chunks(DEFENDER_ROWS_PER_FILE).map(defender_file).collect()
}

fn defender_file(rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    csv_line(&mut out, &DEFENDER_COLUMNS.map(str::to_owned));
    for row in rows {
        csv_line(&mut out, row);
    }
    out
}

fn defender_rows(plan: &Plan) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for (domain, b) in plan.blocked_domains() {
        let (action, severity) = match b.status {
            Status::Blocked => ("Block", "Medium"),
            Status::Unsanctioned => ("Warn", "Low"),
        };
        let recommended =
            b.alternative.as_ref().map(|a| format!("Use {a} instead.")).unwrap_or_default();
        rows.push(vec![
            "DomainName".into(),
            domain.into(),
            String::new(),
            action.into(),
            severity.into(),
            cell(&format!("aiscout: {} is {}", b.name, b.status.as_str())),
            cell(&format!(
                "{} ({}, {}) is {} in aiscout; {domain} is one of its domains.",
                b.name,
                b.vendor,
                b.id,
                b.status.as_str()
            )),
            cell(&recommended),
            String::new(),
            String::new(),
            String::new(),
            "False".into(),
        ]);
    }
    for e in &plan.exceptions {
        rows.push(vec![
            "DomainName".into(),
            e.domain.clone(),
            String::new(),
            "Allowed".into(),
            "Informational".into(),
            cell(&format!("aiscout: {} is allowed", e.product)),
            cell(&format!(
                "{} belongs to {} ({}), below the blocked {}.",
                e.domain, e.product, e.status, e.under
            )),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            "False".into(),
        ]);
    }
    rows
}

/// An SQL string literal: quotes doubled, control characters dropped.
fn sql_string(text: &str) -> String {
    let clean: String = text.chars().filter(|c| !c.is_control()).collect();
    format!("'{}'", clean.replace('\'', "''"))
}

fn sql_list<'a>(values: impl IntoIterator<Item = &'a str>, lower: bool) -> String {
    values
        .into_iter()
        .map(|v| sql_string(&if lower { v.to_lowercase() } else { v.to_owned() }))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The per-user extension tables, on every platform.
fn extension_checks(b: &Blocked) -> Vec<String> {
    let mut checks = Vec::new();
    if !b.chrome_extensions.is_empty() {
        checks.push(format!(
            "SELECT 1 FROM users CROSS JOIN chrome_extensions USING (uid) \
             WHERE chrome_extensions.identifier IN ({})",
            sql_list(b.chrome_extensions.iter().map(String::as_str), false)
        ));
    }
    if !b.firefox_extensions.is_empty() {
        checks.push(format!(
            "SELECT 1 FROM users CROSS JOIN firefox_addons USING (uid) \
             WHERE firefox_addons.identifier IN ({})",
            sql_list(b.firefox_extensions.iter().map(String::as_str), false)
        ));
    }
    if !b.vscode_extensions.is_empty() {
        // osquery's `name` is the extension's id (publisher.name); VS Code ids ignore case.
        checks.push(format!(
            "SELECT 1 FROM users CROSS JOIN vscode_extensions USING (uid) \
             WHERE lower(vscode_extensions.name) IN ({})",
            sql_list(b.vscode_extensions.iter().map(String::as_str), true)
        ));
    }
    checks
}

/// The installed-software checks of one platform.
fn app_checks(b: &Blocked, platform: &str) -> Vec<String> {
    let mut checks = Vec::new();
    match platform {
        "darwin" if !b.macos_bundle_ids.is_empty() => checks.push(format!(
            "SELECT 1 FROM apps WHERE lower(apps.bundle_identifier) IN ({})",
            sql_list(b.macos_bundle_ids.iter().map(String::as_str), true)
        )),
        "windows" if !b.windows_apps.is_empty() => {
            let each: Vec<String> = b
                .windows_apps
                .iter()
                .map(|a| match &a.publisher {
                    Some(p) => format!(
                        "(programs.name = {} COLLATE NOCASE AND programs.publisher = {} \
                         COLLATE NOCASE)",
                        sql_string(&a.display_name),
                        sql_string(p)
                    ),
                    None => {
                        format!("programs.name = {} COLLATE NOCASE", sql_string(&a.display_name))
                    }
                })
                .collect();
            checks.push(format!("SELECT 1 FROM programs WHERE {}", each.join(" OR ")));
        }
        "linux" if !b.linux_packages.is_empty() => {
            let list = sql_list(b.linux_packages.iter().map(String::as_str), false);
            checks.push(format!("SELECT 1 FROM deb_packages WHERE deb_packages.name IN ({list})"));
            checks.push(format!("SELECT 1 FROM rpm_packages WHERE rpm_packages.name IN ({list})"));
        }
        _ => {}
    }
    checks
}

/// osquery/Fleet policies: per blocked product and platform, a query that returns a row (the
/// host passes) only when none of the product's apps, packages or browser and IDE extensions
/// is installed. A JSON array of Fleet policy objects (JSON is YAML, so `fleetctl gitops`
/// reads it as a policies list); each `query` runs in osquery as it is.
pub(super) fn osquery(plan: &Plan) -> String {
    const PLATFORMS: [(&str, &str); 3] =
        [("darwin", "macOS"), ("linux", "Linux"), ("windows", "Windows")];
    let mut policies = Vec::new();
    for b in &plan.blocked {
        for (platform, label) in PLATFORMS {
            let mut checks = app_checks(b, platform);
            checks.extend(extension_checks(b));
            if checks.is_empty() {
                continue;
            }
            let query = format!("SELECT 1 WHERE NOT EXISTS ({});", checks.join(" UNION ALL "));
            let mut resolution = format!("Uninstall {} and remove its extensions.", b.name);
            if let Some(alt) = &b.alternative {
                resolution.push_str(&format!(" Use {alt} instead."));
            }
            policies.push(json!({
                "name": format!("aiscout: {} ({}) is not installed ({label})", b.name, b.id),
                "platform": platform,
                "description": format!(
                    "{} ({}) is {} in aiscout. This policy fails on a host where its app or a \
                     browser or IDE extension of it is installed.",
                    b.name, b.vendor, b.status.as_str()
                ),
                "resolution": resolution,
                "query": query,
                "critical": false,
            }));
        }
    }
    let mut s =
        serde_json::to_string_pretty(&Value::Array(policies)).unwrap_or_else(|_| "[]".to_owned());
    s.push('\n');
    s
}
