//! Generic CSVs read through a column mapping from the config (`[import.expenses.generic]`,
//! `[import.gateway.generic]`) or `--map` flags: the files in `tests/data/mapping/` imported
//! into a real SQLite store, the errors a wrong mapping gives, and the real binary's
//! `import --config` and `check-config`.

use std::path::{Path, PathBuf};
use std::process::Command;

use aiscout_collector::cli::{self, ImportCommand};
use aiscout_collector::config::{self, Overrides};
use aiscout_collector::ingest::mapping::Mappings;
use aiscout_collector::ingest::parse::ymd;
use aiscout_collector::store::Store;
use aiscout_signatures::Catalog;

use super::store::harness;

const BIN: &str = env!("CARGO_BIN_EXE_aiscout-collector");

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mapping").join(name)
}

/// The mappings of `tests/data/mapping/aiscout.toml`, loaded as `serve` and `import` do.
fn mappings() -> Mappings {
    config::load(Some(&data("aiscout.toml")), None, None, &Overrides::default())
        .unwrap()
        .import
        .mappings
}

async fn import(
    store: &impl Store,
    mappings: &Mappings,
    command: ImportCommand,
) -> Result<cli::Output, (cli::Output, cli::CommandError)> {
    cli::import(store, Catalog::builtin().unwrap(), command, mappings, false).await
}

fn expenses(format: &str, map: &[&str], file: &str) -> ImportCommand {
    ImportCommand::Expenses {
        format: format.into(),
        map: map.iter().map(|s| (*s).to_owned()).collect(),
        cardholder: None,
        files: vec![data(file)],
    }
}

fn gateway(format: &str, map: &[&str], file: &str) -> ImportCommand {
    ImportCommand::Gateway {
        format: format.into(),
        map: map.iter().map(|s| (*s).to_owned()).collect(),
        files: vec![data(file)],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapped_expense_export_is_detected_normalised_and_imported_once() {
    let h = harness::sqlite().await;
    let m = mappings();
    let out = import(&h.store, &m, expenses("auto", &[], "expenses.csv")).await.unwrap();
    assert!(
        out.stdout.starts_with(
            "expenses.csv (generic): 6 rows, 3 stored, 0 already imported, 0 candidates, \
             1 not AI, 1 not spend, 1 errors"
        ),
        "{}",
        out.stdout
    );
    // The ISO date does not match date_format: the error names the column and the format.
    assert_eq!(
        out.stderr,
        ["error: expenses.csv:7: column \"Posted On\": not a date: \"2026-11-09\" \
             (expected %d/%m/%Y)"]
    );
    let lines = h.store.expenses(None).await.unwrap();
    let got: Vec<_> = lines
        .iter()
        .map(|l| {
            (
                ymd(l.occurred_at.get()),
                l.amount_minor,
                l.currency.as_str(),
                l.product.as_deref(),
                l.payer_name.as_str(),
                l.department.as_str(),
                l.dedupe_key.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            // Purchases are negative in this export: stored spend-positive.
            (
                "2026-11-05".into(),
                2000,
                "USD",
                Some("openai.chatgpt"),
                "Ann Lee",
                "Engineering",
                "id:T-1001"
            ),
            // No currency cell: currency_default.
            (
                "2026-11-06".into(),
                4000,
                "USD",
                Some("anysphere.cursor"),
                "Bob Kim",
                "Sales",
                "id:T-1002"
            ),
            // A refund, positive in the file, is negative spend.
            (
                "2026-11-08".into(),
                -2000,
                "EUR",
                Some("openai.chatgpt"),
                "Ann Lee",
                "Engineering",
                "id:T-1005"
            ),
        ]
    );
    let again = import(&h.store, &m, expenses("auto", &[], "expenses.csv")).await.unwrap();
    assert!(again.stdout.contains(" 0 stored, 3 already imported"), "{}", again.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_flags_alone_or_over_the_config_select_the_columns() {
    let h = harness::sqlite().await;
    // Without the config, the flags give the whole mapping.
    let flags = [
        "date=Posted On",
        "date_format=%d/%m/%Y",
        "amount=Amount (USD)",
        "amount_sign=purchases_negative",
        "descriptor=Description",
        "id=Txn ID",
    ];
    let out = import(&h.store, &Mappings::default(), expenses("generic", &flags, "expenses.csv"))
        .await
        .unwrap();
    assert!(out.stdout.contains("6 rows, 3 stored"), "{}", out.stdout);

    // A flag overrides one key of the config: with a date format that matches nothing,
    // every row is an error naming that format.
    let h = harness::sqlite().await;
    let err =
        import(&h.store, &mappings(), expenses("generic", &["date_format=%Y"], "expenses.csv"))
            .await
            .unwrap_err();
    assert!(err.1.to_string().contains("date_format"), "{}", err.1);
    let out = import(
        &h.store,
        &mappings(),
        expenses("generic", &["date_format=%Y/%m/%d"], "expenses.csv"),
    )
    .await
    .unwrap();
    assert!(out.stdout.contains(" 0 stored") && out.stdout.contains("5 errors"), "{}", out.stdout);
    assert!(out.stderr[0].contains("(expected %Y/%m/%d)"), "{:?}", out.stderr);

    let err = import(&h.store, &mappings(), expenses("generic", &["Posted On"], "expenses.csv"))
        .await
        .unwrap_err();
    assert!(err.1.is_usage() && err.1.to_string().contains("KEY=VALUE"), "{}", err.1);
    let err =
        import(&h.store, &mappings(), expenses("generic", &["dat=Posted On"], "expenses.csv"))
            .await
            .unwrap_err();
    assert!(err.1.to_string().starts_with("--map dat: unknown key"), "{}", err.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapped_column_missing_from_the_header_fails_the_file_naming_key_and_header() {
    let h = harness::sqlite().await;
    let mut m = mappings();
    m.expenses.set("department", "Division").unwrap();
    let (out, e) =
        import(&h.store, &m, expenses("generic", &[], "expenses.csv")).await.unwrap_err();
    assert!(matches!(e, cli::CommandError::Files { failed: 1, total: 1 }), "{e}");
    assert_eq!(
        out.stderr,
        ["error: expenses.csv: column \"Division\" (import.expenses.generic.department) is \
             not in the header; the header is: \"Posted On\", \"Txn ID\", \"Cardholder\", \
             \"Cost Center\", \"Description\", \"Amount (USD)\", \"Ccy\", \"Kind\""]
    );
    // Under auto detection the error says the configured mapping did not fit, and why.
    let (out, _) = import(&h.store, &m, expenses("auto", &[], "expenses.csv")).await.unwrap_err();
    assert!(
        out.stderr[0].contains("nor the configured generic one: column \"Division\""),
        "{:?}",
        out.stderr
    );
    assert!(h.store.expenses(None).await.unwrap().is_empty());

    // The gateway mapping reports its own section.
    let mut m = mappings();
    m.gateway.set("cost", "Amount").unwrap();
    let (out, _) = import(&h.store, &m, gateway("generic", &[], "gateway.csv")).await.unwrap_err();
    assert!(out.stderr[0].contains("(import.gateway.generic.cost)"), "{:?}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapped_gateway_report_maps_models_and_provider_defaults_to_products() {
    let h = harness::sqlite().await;
    let out = import(&h.store, &mappings(), gateway("auto", &[], "gateway.csv")).await.unwrap();
    assert!(out.stdout.starts_with("gateway.csv (generic): 3 rows, 3 stored"), "{}", out.stdout);
    assert!(out.stderr.is_empty(), "{:?}", out.stderr);
    // The mapped user column places Ann's spend in her department from the directory; Bob is
    // not in it, so his spend stays with the team column.
    let ann = aiscout_collector::model::Person {
        email: "ann@example.com".into(),
        name: "Ann".into(),
        department: "Research".into(),
        manager: None,
    };
    h.store.upsert_people(vec![ann]).await.unwrap();
    let mut totals: Vec<_> = h
        .store
        .gateway_totals(None)
        .await
        .unwrap()
        .into_iter()
        .map(|t| {
            (
                ymd(t.day.get()),
                t.product,
                t.provider,
                t.department,
                t.currency,
                t.cost_nanos,
                t.tokens,
            )
        })
        .collect();
    totals.sort();
    let s = |v: &str| v.to_owned();
    assert_eq!(
        totals,
        [
            (
                s("2026-11-01"),
                Some(s("anthropic.api")),
                s("anthropic"),
                s("Sales"),
                s("USD"),
                400_000_000,
                900
            ),
            (
                s("2026-11-01"),
                Some(s("openai.api")),
                s("openai"),
                s("Research"),
                s("USD"),
                1_250_000_000,
                1500
            ),
            // No provider cell: provider_default, whose API product stands in for the
            // unknown model.
            (
                s("2026-11-02"),
                Some(s("openai.api")),
                s("openai"),
                s("Sales"),
                s("EUR"),
                10_000_000,
                20
            ),
        ]
    );
}

#[test]
fn the_binary_imports_with_the_config_mapping_and_check_config_names_bad_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(tmp.path())
        .arg("--config")
        .arg(data("aiscout.toml"))
        .args(["import", "expenses"])
        .arg(data("expenses.csv"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("expenses.csv (generic): 6 rows, 3 stored"), "{stdout}");

    let out = Command::new(BIN)
        .arg("--config")
        .arg(data("aiscout.toml"))
        .arg("check-config")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let out = Command::new(BIN)
        .arg("--config")
        .arg(data("bad.toml"))
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("4 configuration problem(s)"), "{err}");
    for line in [
        "  import.expenses.generic.amount_sign: \"upside_down\" is not purchases_positive or \
         purchases_negative",
        "  import.expenses.generic.date_format: unknown directive %q",
        "  import.expenses.generic.payee: unknown key (known: date, amount,",
        "  import.gateway.generic.currency_default: \"dollars\" is not a three-letter currency",
    ] {
        assert!(err.contains(line), "{line:?} missing from:\n{err}");
    }
}
