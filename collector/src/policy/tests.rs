//! Snapshots of every format on a small catalog that has every hard case, round-trip parses
//! of the JSON and CSV formats, and the decisions-only property over random review sets.

use std::collections::BTreeSet;

use aiscout_signatures::catalog::{DomainRule, DomainUse, Product, WindowsApp};
use aiscout_wire::UnixSecs;
use proptest::prelude::*;

use super::*;

fn product(id: &str, name: &str, domains: &[&str]) -> Product {
    let mut p = Product::default();
    p.id = id.into();
    p.name = name.into();
    p.vendor = id.split('.').next().unwrap_or(id).into();
    p.domains = domains
        .iter()
        .map(|d| DomainRule { pattern: (*d).into(), usage: DomainUse::Web })
        .collect();
    p
}

/// The hard cases: a blocked parent with an allowed child (`vendor.example` and
/// `api.vendor.example`), a domain shared with a product under review (`shared.example`), an
/// unsanctioned product with a free-text alternative, a wildcard rule of a blocked product and
/// an allowed product's wildcard rule below a blocked domain.
fn catalog() -> Catalog {
    let mut chat = product(
        "vendor.chat",
        "Vendor Chat",
        &["vendor.example", "chat.vendor.example", "shared.example", "vendorcdn.example"],
    );
    chat.chrome_extensions = vec!["a".repeat(32), "not-a-chrome-id".into()];
    chat.firefox_extensions = vec!["chat@vendor.example".into()];
    chat.vscode_extensions = vec!["vendor.chat".into()];
    chat.macos_bundle_ids = vec!["com.vendor.Chat".into()];
    chat.windows_apps = vec![WindowsApp {
        display_name: "Vendor Chat".into(),
        publisher: Some("Vendor Inc.".into()),
    }];
    chat.linux_packages = vec!["vendor-chat".into()];
    let api = product("vendor.api", "Vendor API", &["api.vendor.example"]);
    let mut notes = product("other.notes", "Other Notes", &["shared.example", "notes.example"]);
    notes.firefox_extensions = vec!["notes@other.example".into()];
    let mut coder = product("coder.ide", "Coder", &["coder.example"]);
    coder.vscode_extensions = vec!["coder.assistant".into()];
    coder.chrome_extensions = vec!["b".repeat(32)];
    coder.windows_apps = vec![WindowsApp { display_name: "Coder's IDE".into(), publisher: None }];
    let mut good = product("good.assist", "Good Assist", &["good.example"]);
    good.vscode_extensions = vec!["good.assist".into()];
    let wild = product("wild.platform", "Wild Platform", &["wild.example", "*-ai.cloud.example"]);
    let models = product("wild.models", "Wild Models", &["*-models.wild.example"]);
    let quiet = product("quiet.tool", "Quiet Tool", &["quiet.example"]);
    Catalog::new(7, vec![chat, api, notes, coder, good, wild, models, quiet])
}

fn review(product: &str, status: &str, alternative: &str, at: i64) -> Review {
    Review {
        product: product.into(),
        status: status.into(),
        note: String::new(),
        reviewed_by: "sec".into(),
        reviewed_at: UnixSecs(at),
        business_owner: String::new(),
        alternative: alternative.into(),
        renewal: None,
    }
}

fn reviews() -> Vec<Review> {
    vec![
        review("vendor.chat", "blocked", "good.assist", 1_767_225_600),
        review("vendor.api", "sanctioned", "", 1_767_225_601),
        review("other.notes", "under_review", "", 1_767_225_602),
        review("coder.ide", "unsanctioned", "Ask IT for\nthe approved IDE", 1_767_225_603),
        review("good.assist", "sanctioned", "", 1_767_225_604),
        review("wild.platform", "blocked", "", 1_767_225_605),
        review("no.such.product", "blocked", "", 1_767_225_606),
    ]
}

fn coaching() -> Settings {
    Settings {
        coaching_url: Some(CoachingUrl::parse("https://use-this.corp.example/ai").unwrap()),
        coaching_message: None,
    }
}

fn both() -> Selection {
    Selection::new([Status::Blocked, Status::Unsanctioned])
}

#[test]
fn every_format_snapshot() {
    let plan = plan(&catalog(), &reviews(), &both(), &coaching());
    let shared = plan.report_lines();
    insta::assert_snapshot!("report_lines", shared.join("\n"));
    for format in Format::ALL {
        let export = render(&plan, format);
        insta::assert_snapshot!(format.as_str(), export.body);
        // Every format reports the plan's lines, then its own.
        let (common, own) = export.notes.split_at(shared.len());
        assert_eq!(common, shared, "{format}");
        let expected_own = match format {
            Format::UrlList => 1,
            _ => 0,
        };
        assert_eq!(own.len(), expected_own, "{format}: {own:?}");
        assert_eq!(export.held_back, 4);
    }
    let url_list = render(&plan, Format::UrlList);
    assert_eq!(
        url_list.notes.last().map(String::as_str),
        Some(
            "url-list has no exceptions: api.vendor.example of vendor.api (sanctioned) lies \
             below the blocked vendor.example; allow it in your gateway"
        )
    );
}

#[test]
fn the_default_exports_blocked_only_and_without_coaching_answers_nxdomain() {
    let export =
        export(&catalog(), &reviews(), &Selection::default(), &Settings::default(), Format::Rpz);
    insta::assert_snapshot!("rpz_blocked_only", export.body);
    assert!(!export.body.contains("coder.example"), "unsanctioned is not exported by default");
}

#[test]
fn the_plan_holds_back_shared_wildcard_and_malformed_indicators() {
    let plan = plan(&catalog(), &reviews(), &both(), &coaching());
    let held: Vec<String> = plan.held_back.iter().map(ToString::to_string).collect();
    assert_eq!(
        held,
        [
            "held back chrome extension not-a-chrome-id of vendor.chat: not a valid chrome \
             extension id",
            "held back domain shared.example of vendor.chat: also used by other.notes \
             (under_review)",
            "held back domain *-ai.cloud.example of wild.platform: a wildcard inside a label \
             cannot be written as a DNS, hosts or URL rule",
            "held back domain wild.example of wild.platform: it would also block \
             *-models.wild.example, a wildcard rule of wild.models (allowed)",
        ]
    );
    let exceptions: Vec<(&str, &str, &str)> = plan
        .exceptions
        .iter()
        .map(|e| (e.domain.as_str(), e.product.as_str(), e.under.as_str()))
        .collect();
    assert_eq!(exceptions, [("api.vendor.example", "vendor.api", "vendor.example")]);
    let chat = plan.blocked.iter().find(|b| b.id == "vendor.chat").unwrap();
    assert!(chat.coach, "a sanctioned catalog alternative and a coaching page");
    assert_eq!(chat.alternative.as_deref(), Some("Good Assist"));
    let coder = plan.blocked.iter().find(|b| b.id == "coder.ide").unwrap();
    assert_eq!(coder.alternative.as_deref(), Some("Ask IT for the approved IDE"));
    assert_eq!(plan.coaching_host.as_deref(), Some("use-this.corp.example"));
    assert_eq!(plan.serial, 1_767_225_606);
    assert_eq!(plan.sanctioned_vscode, [("good.assist".to_owned(), "good.assist".to_owned())]);
}

#[test]
fn an_alternative_that_is_not_sanctioned_does_not_coach() {
    let mut reviews = reviews();
    reviews[4].status = "under_review".into();
    let plan = plan(&catalog(), &reviews, &both(), &coaching());
    let chat = plan.blocked.iter().find(|b| b.id == "vendor.chat").unwrap();
    assert!(!chat.coach);
    assert!(plan.notes.iter().any(|n| n.contains("Good Assist is not sanctioned")), "{plan:?}");
    // The free-text alternative of coder.ide still coaches.
    assert_eq!(plan.coaching_host.as_deref(), Some("use-this.corp.example"));
    let rpz = render(&plan, Format::Rpz).body;
    assert!(rpz.contains("vendor.example CNAME .\n"), "{rpz}");
    assert!(rpz.contains("coder.example CNAME use-this.corp.example.\n"), "{rpz}");
}

#[test]
fn a_coaching_page_under_a_blocked_domain_is_not_used() {
    let settings = Settings {
        coaching_url: Some(CoachingUrl::parse("https://help.vendor.example/").unwrap()),
        coaching_message: None,
    };
    let plan = plan(&catalog(), &reviews(), &both(), &settings);
    assert!(plan.blocked.iter().all(|b| !b.coach));
    assert_eq!(plan.coaching_host, None);
    assert!(plan.notes.iter().any(|n| n.contains("under the blocked domain vendor.example")));
}

#[test]
fn free_text_never_adds_a_line() {
    let mut reviews = reviews();
    reviews[0].alternative = "x\nevil.example CNAME .\r\n; y".into();
    let plan = plan(&catalog(), &reviews, &both(), &coaching());
    for format in Format::ALL {
        let body = render(&plan, format).body;
        assert!(!body.lines().any(|l| l.starts_with("evil.example")), "{format}: {body}");
    }
    assert_eq!(one_line(&"é".repeat(300)).chars().count(), MAX_TEXT_CHARS + 1);
}

#[test]
fn selections_refuse_everything_but_decisions_to_block() {
    assert_eq!(Selection::parse([]).unwrap(), Selection::default());
    assert_eq!(Selection::parse(["unsanctioned", "blocked"]).unwrap(), both());
    let err = Selection::parse(["sanctioned"]).unwrap_err();
    assert!(err.contains("only decisions to block"), "{err}");
    let err = Selection::parse(["blokced"]).unwrap_err();
    assert!(err.contains("unknown status \"blokced\""), "{err}");
    for f in Format::ALL {
        assert_eq!(Format::parse(f.as_str()), Some(f));
    }
    assert_eq!(Format::parse("RPZ"), None);
}

/// Chrome's documented types (chromium `policy_templates`, `ExtensionInstallBlocklist`,
/// `URLBlocklist`, `URLAllowlist`: each `list` of strings).
#[test]
fn chrome_policy_has_only_documented_names_and_types() {
    let plan = plan(&catalog(), &reviews(), &both(), &coaching());
    let v: serde_json::Value =
        serde_json::from_str(&render(&plan, Format::ChromePolicy).body).unwrap();
    let object = v.as_object().unwrap();
    let names: Vec<&str> = object.keys().map(String::as_str).collect();
    assert_eq!(names, ["ExtensionInstallBlocklist", "URLAllowlist", "URLBlocklist"]);
    for (name, value) in object {
        let list = value.as_array().unwrap_or_else(|| panic!("{name} is a list"));
        assert!(list.iter().all(serde_json::Value::is_string), "{name}: list of strings");
    }
    let ids: Vec<&str> = object["ExtensionInstallBlocklist"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a".repeat(32), "b".repeat(32)]);
    assert!(ids.iter().all(|id| is_chrome_id(id)));
    assert_eq!(object["URLAllowlist"], serde_json::json!(["api.vendor.example"]));
}

#[test]
fn firefox_and_vscode_policies_parse_with_their_documented_shapes() {
    let plan = plan(&catalog(), &reviews(), &both(), &coaching());
    let v: serde_json::Value =
        serde_json::from_str(&render(&plan, Format::FirefoxPolicy).body).unwrap();
    let policies = v["policies"].as_object().unwrap();
    assert_eq!(policies.keys().collect::<Vec<_>>(), ["ExtensionSettings", "WebsiteFilter"]);
    let settings = policies["ExtensionSettings"].as_object().unwrap();
    assert_eq!(settings.keys().collect::<Vec<_>>(), ["chat@vendor.example"]);
    assert_eq!(settings["chat@vendor.example"]["installation_mode"], "blocked");
    let filter = policies["WebsiteFilter"].as_object().unwrap();
    assert!(filter["Block"].as_array().unwrap().contains(&"*://*.vendor.example/*".into()));
    assert_eq!(filter["Exceptions"], serde_json::json!(["*://*.api.vendor.example/*"]));

    let v: serde_json::Value =
        serde_json::from_str(&render(&plan, Format::VscodePolicy).body).unwrap();
    let allowed = v["extensions.allowed"].as_object().unwrap();
    assert_eq!(allowed["*"], true);
    assert_eq!(allowed["good.assist"], true);
    assert_eq!(allowed["vendor.chat"], false);
    assert_eq!(allowed["coder.assistant"], false);
    assert!(allowed.keys().all(|k| k == "*" || is_vscode_id(k)));
}

#[test]
fn defender_indicators_parse_as_csv_with_the_sample_columns() {
    let plan = plan(&catalog(), &reviews(), &both(), &coaching());
    let body = render(&plan, Format::DefenderIndicators).body;
    let mut reader = csv::ReaderBuilder::new().from_reader(body.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(header, DEFENDER_COLUMNS);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let actions: Vec<(&str, &str)> = rows.iter().map(|r| (&r[1], &r[3])).collect();
    assert_eq!(
        actions,
        [
            ("chat.vendor.example", "Block"),
            ("coder.example", "Warn"),
            ("vendor.example", "Block"),
            ("vendorcdn.example", "Block"),
            ("api.vendor.example", "Allowed"),
        ]
    );
    assert!(rows.iter().all(|r| r.len() == DEFENDER_COLUMNS.len() && &r[0] == "DomainName"));
    assert_eq!(&rows[1][7], "Use Ask IT for the approved IDE instead.");
}

#[test]
fn coaching_names_a_sanctioned_alternative_with_the_organisations_message() {
    let catalog = catalog();
    let message = coaching_message("  Ask   #ai-help for a licence. ").unwrap();
    let settings = Settings { coaching_message: Some(message), ..Settings::default() };
    let chat = super::coaching(&catalog, &reviews(), &settings, "vendor.chat").unwrap();
    assert_eq!(chat.line(), "Use Good Assist instead: Ask #ai-help for a licence.");
    assert_eq!(chat.alternative_id.as_deref(), Some("good.assist"));
    // Free text counts as the organisation's own word, made one line.
    let coder = super::coaching(&catalog, &reviews(), &Settings::default(), "coder.ide").unwrap();
    assert_eq!(coder.line(), "Use Ask IT for the approved IDE instead.");
    assert_eq!(coder.alternative_id, None);
    // No coaching: sanctioned, under review, unreviewed, no alternative, or an alternative
    // that is not sanctioned now.
    for id in ["good.assist", "other.notes", "quiet.tool", "wild.platform", "no.such"] {
        assert_eq!(super::coaching(&catalog, &reviews(), &settings, id), None, "{id}");
    }
    let mut reviews = reviews();
    reviews[4].status = "under_review".into();
    assert_eq!(super::coaching(&catalog, &reviews, &settings, "vendor.chat"), None);
    assert!(coaching_message("two\nlines").unwrap_err().contains("one line"));
    assert!(coaching_message(" ").unwrap_err().contains("empty"));
}

/// A catalog of `n` blocked single-domain products.
fn many_blocked(n: usize) -> (Catalog, Vec<Review>) {
    let products =
        (0..n).map(|i| product(&format!("p{i:04}.x"), "P", &[&format!("d{i:04}.example")]));
    let reviews = (0..n).map(|i| review(&format!("p{i:04}.x"), "blocked", "", 1)).collect();
    (Catalog::new(1, products.collect()), reviews)
}

#[test]
fn defender_indicators_over_500_rows_are_split_into_files_of_at_most_500() {
    for (n, files) in [(0, 1), (1, 1), (500, 1), (501, 2), (1_000, 2), (1_201, 3)] {
        let (catalog, reviews) = many_blocked(n);
        let plan = plan(&catalog, &reviews, &Selection::default(), &Settings::default());
        let pages = render_files(&plan, Format::DefenderIndicators);
        assert_eq!(pages.len(), files, "{n} rows");
        let mut values = Vec::new();
        for page in &pages {
            let mut reader = csv::ReaderBuilder::new().from_reader(page.as_bytes());
            assert_eq!(reader.headers().unwrap(), DEFENDER_COLUMNS.as_slice());
            let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
            assert!(rows.len() <= DEFENDER_ROWS_PER_FILE, "{n}: {}", rows.len());
            values.extend(rows.iter().map(|r| r[1].to_owned()));
        }
        // The pages hold the whole file's rows, in its order, once each.
        let whole = render(&plan, Format::DefenderIndicators);
        let mut reader = csv::ReaderBuilder::new().from_reader(whole.body.as_bytes());
        let all: Vec<String> = reader.records().map(|r| r.unwrap()[1].to_owned()).collect();
        assert_eq!(values, all, "{n} rows");
        assert_eq!(all.len(), n);
        assert_eq!(whole.notes.iter().any(|l| l.contains("at most 500 per file")), n > 500);
        // Every other format is one file.
        assert_eq!(render_files(&plan, Format::Rpz), [render(&plan, Format::Rpz).body]);
    }
}

#[test]
fn osquery_policies_name_only_blocked_products_per_platform() {
    let plan = plan(&catalog(), &reviews(), &both(), &coaching());
    let v: serde_json::Value = serde_json::from_str(&render(&plan, Format::Osquery).body).unwrap();
    let names: Vec<(&str, &str)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["platform"].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("aiscout: Coder (coder.ide) is not installed (macOS)", "darwin"),
            ("aiscout: Coder (coder.ide) is not installed (Linux)", "linux"),
            ("aiscout: Coder (coder.ide) is not installed (Windows)", "windows"),
            ("aiscout: Vendor Chat (vendor.chat) is not installed (macOS)", "darwin"),
            ("aiscout: Vendor Chat (vendor.chat) is not installed (Linux)", "linux"),
            ("aiscout: Vendor Chat (vendor.chat) is not installed (Windows)", "windows"),
        ]
    );
    let coder_windows = v[2]["query"].as_str().unwrap();
    assert!(coder_windows.contains("programs.name = 'Coder''s IDE' COLLATE NOCASE"));
}

// ---- Decisions only, over random review sets. ----

/// What a format blocks: names (covering names below them unless `exact`) and exceptions.
struct Blocks {
    names: BTreeSet<String>,
    exceptions: BTreeSet<String>,
    exact: bool,
    ids: BTreeSet<String>,
}

fn parse_blocks(format: Format, body: &str) -> Blocks {
    let mut b = Blocks {
        names: BTreeSet::new(),
        exceptions: BTreeSet::new(),
        exact: false,
        ids: BTreeSet::new(),
    };
    let strs = |v: &serde_json::Value| -> Vec<String> {
        v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect()
    };
    match format {
        Format::Rpz => {
            for line in body.lines().filter(|l| !l.starts_with([';', '$', '@']) && !l.is_empty()) {
                let (owner, target) = line.split_once(" CNAME ").unwrap();
                let name = owner.strip_prefix("*.").unwrap_or(owner).to_owned();
                if target == "rpz-passthru." {
                    b.exceptions.insert(name);
                } else {
                    b.names.insert(name);
                }
            }
        }
        Format::Hosts => {
            b.exact = true;
            for line in body.lines().filter(|l| l.starts_with("0.0.0.0 ")) {
                b.names.insert(line.trim_start_matches("0.0.0.0 ").to_owned());
            }
        }
        Format::Adblock => {
            for line in body.lines() {
                if let Some(n) = line.strip_prefix("@@||").and_then(|l| l.strip_suffix('^')) {
                    b.exceptions.insert(n.to_owned());
                } else if let Some(n) = line.strip_prefix("||").and_then(|l| l.strip_suffix('^')) {
                    b.names.insert(n.to_owned());
                }
            }
        }
        Format::UrlList => {
            // A gateway list matches below a name too, and has no exceptions: only the
            // names themselves are checked (the exceptions are reported as notes).
            b.exact = true;
            b.names.extend(body.lines().map(str::to_owned));
        }
        Format::ChromePolicy => {
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            b.names.extend(strs(&v["URLBlocklist"]));
            b.exceptions.extend(strs(&v["URLAllowlist"]));
            b.ids.extend(strs(&v["ExtensionInstallBlocklist"]));
        }
        Format::FirefoxPolicy => {
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            let host = |p: String| p.trim_start_matches("*://*.").trim_end_matches("/*").to_owned();
            b.names.extend(strs(&v["policies"]["WebsiteFilter"]["Block"]).into_iter().map(host));
            b.exceptions
                .extend(strs(&v["policies"]["WebsiteFilter"]["Exceptions"]).into_iter().map(host));
            b.ids.extend(v["policies"]["ExtensionSettings"].as_object().unwrap().keys().cloned());
        }
        Format::VscodePolicy => {
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            for (id, allowed) in v["extensions.allowed"].as_object().unwrap() {
                if allowed == false {
                    b.ids.insert(id.to_lowercase());
                }
            }
        }
        Format::DefenderIndicators => {
            let mut reader = csv::ReaderBuilder::new().from_reader(body.as_bytes());
            for r in reader.records().map(Result::unwrap) {
                if &r[3] == "Allowed" {
                    b.exceptions.insert(r[1].to_owned());
                } else {
                    b.names.insert(r[1].to_owned());
                }
            }
        }
        Format::Osquery => {
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            for p in v.as_array().unwrap() {
                let name = p["name"].as_str().unwrap();
                let id = name.rsplit_once(") is not").unwrap().0.rsplit_once('(').unwrap().1;
                b.ids.insert(format!("product:{id}"));
            }
        }
    }
    b
}

/// Whether `name` is blocked by a format: the most specific of its names and exceptions that
/// covers `name` is a name.
fn covered(b: &Blocks, name: &str) -> bool {
    if b.exact {
        return b.names.contains(name);
    }
    let mut best: Option<(usize, bool)> = None;
    for (set, blocks) in [(&b.names, true), (&b.exceptions, false)] {
        for rule in set {
            if under_or_at(name, rule) && best.is_none_or(|(len, _)| rule.len() > len) {
                best = Some((rule.len(), blocks));
            }
        }
    }
    best.is_some_and(|(_, blocks)| blocks)
}

fn random_reviews(catalog: &Catalog, picks: &[u8]) -> Vec<Review> {
    const STATUSES: [&str; 5] = ["", "blocked", "sanctioned", "under_review", "unsanctioned"];
    let ids: Vec<&str> = catalog.products().iter().map(|p| p.id.as_str()).collect();
    catalog
        .products()
        .iter()
        .zip(picks.iter().cycle())
        .enumerate()
        .filter_map(|(i, (p, pick))| {
            let status = STATUSES[usize::from(pick % 5)];
            let alternative = ids[(usize::from(*pick) * 7 + i) % ids.len()];
            (!status.is_empty()).then(|| review(&p.id, status, alternative, i64::from(*pick)))
        })
        .collect()
}

fn check_decisions_only(catalog: &Catalog, reviews: &[Review], selection: &Selection) {
    let status_of = |id: &str| {
        reviews.iter().find(|r| r.product == id).and_then(|r| ReviewStatus::parse(&r.status))
    };
    let plan = plan(catalog, reviews, selection, &coaching());
    for format in Format::ALL {
        let body = render(&plan, format).body;
        let blocks = parse_blocks(format, &body);
        for p in catalog.products() {
            let exported = status_of(&p.id).is_some_and(|s| selection.includes(s));
            let own_ids: Vec<String> = p
                .chrome_extensions
                .iter()
                .chain(&p.firefox_extensions)
                .map(Clone::clone)
                .chain(p.vscode_extensions.iter().map(|e| e.to_lowercase()))
                .chain([format!("product:{}", p.id)])
                .collect();
            if exported {
                continue;
            }
            for d in &p.domains {
                match d.pattern.split_once('.') {
                    Some((first, parent)) if first.contains('*') => {
                        let hit = blocks.names.iter().find(|n| under_or_at(parent, n));
                        assert!(
                            blocks.exact || hit.is_none(),
                            "{format}: {} ({:?}) has its rule {} under blocked {hit:?}",
                            p.id,
                            status_of(&p.id),
                            d.pattern
                        );
                    }
                    _ => assert!(
                        !covered(&blocks, &d.pattern),
                        "{format}: {} ({:?}) has its domain {} blocked",
                        p.id,
                        status_of(&p.id),
                        d.pattern
                    ),
                }
            }
            for id in own_ids {
                assert!(
                    !blocks.ids.contains(&id),
                    "{format}: {} ({:?}) has {id} blocked",
                    p.id,
                    status_of(&p.id)
                );
            }
        }
        // And everything blocked is an indicator of an exported product.
        let exported_domains: BTreeSet<&str> = catalog
            .products()
            .iter()
            .filter(|p| status_of(&p.id).is_some_and(|s| selection.includes(s)))
            .flat_map(|p| p.domains.iter().map(|d| d.pattern.as_str()))
            .collect();
        for n in &blocks.names {
            assert!(exported_domains.contains(n.as_str()), "{format}: {n} is not exported");
        }
    }
}

#[test]
fn the_fixed_review_set_blocks_decisions_only() {
    check_decisions_only(&catalog(), &reviews(), &both());
    check_decisions_only(&catalog(), &reviews(), &Selection::default());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// A product in review, sanctioned, unreviewed, or with a decision not chosen, never has
    /// an indicator of its own blocked by any format, on the built-in catalog.
    #[test]
    fn only_chosen_decisions_are_ever_blocked(
        picks in proptest::collection::vec(any::<u8>(), 1..64),
        unsanctioned in any::<bool>(),
    ) {
        let catalog = Catalog::builtin().unwrap();
        let selection = if unsanctioned { both() } else { Selection::default() };
        check_decisions_only(&catalog, &random_reviews(&catalog, &picks), &selection);
    }

    /// The same on the small catalog, where shared and nested names are dense.
    #[test]
    fn only_chosen_decisions_are_ever_blocked_small(
        picks in proptest::collection::vec(any::<u8>(), 1..16),
        unsanctioned in any::<bool>(),
    ) {
        let catalog = catalog();
        let selection = if unsanctioned { both() } else { Selection::default() };
        check_decisions_only(&catalog, &random_reviews(&catalog, &picks), &selection);
    }
}
