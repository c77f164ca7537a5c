//! The bundled sample files in `examples/` imported on both backends, then the inventory and
//! reconciliation checked and snapshotted. One snapshot serves both backends, so SQLite and
//! PostgreSQL must produce the same reports.

use std::path::PathBuf;
use std::sync::Arc;

use aiscout_collector::cli::{self, ImportCommand, ReportCommand};
use aiscout_collector::ingest::file::{self, Input};
use aiscout_collector::model::{Batch, Device, Sighting};
use aiscout_collector::review;
use aiscout_collector::store::Store;
use aiscout_signatures::{Catalog, Index};
use aiscout_wire::{InventoryList, ReviewStatus, UnixSecs};

use super::store::harness;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(examples().join(dir)).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

/// 2026-11-20, the day the reports are computed as of.
const AS_OF: &str = "2026-11-20";
const DAY: i64 = 86_400;
/// 2026-11-15 00:00 UTC.
const NOV_15: i64 = 1_794_700_800;

fn device(host: &str, owner: &str) -> Device {
    Device {
        host_id: host.into(),
        hostname: format!("{host}.example.com"),
        os: "macos".into(),
        os_version: "15.1".into(),
        agent_version: "0.1.0".into(),
        owner_email: Some(owner.into()),
    }
}

fn seen(product: &str, kind: &str, value: &str, user: &str, at: i64) -> Sighting {
    Sighting {
        product: product.into(),
        kind: kind.parse().unwrap(),
        value: value.into(),
        user: user.into(),
        process: String::new(),
        window: UnixSecs(at - at % 3600),
        first_seen: UnixSecs(at),
        last_seen: UnixSecs(at + 60),
        count: 3,
    }
}

async fn import(store: &impl Store, command: ImportCommand) -> String {
    let out = cli::import(store, Catalog::builtin().unwrap(), command, &Default::default(), false)
        .await
        .unwrap_or_else(|(out, e)| panic!("{e}: {out:?}"));
    assert!(out.stderr.is_empty(), "{:?}", out.stderr);
    out.stdout
}

async fn report(store: &impl Store, command: ReportCommand) -> String {
    cli::report(store, &Catalog::builtin().unwrap(), &Default::default(), command)
        .await
        .unwrap()
        .stdout
}

/// Imports everything in `examples/`, enrolls two devices with sightings, and reviews two
/// products.
pub(crate) async fn load(store: &impl Store) {
    import(store, ImportCommand::People { file: examples().join("people.csv") }).await;
    let first = import(
        store,
        ImportCommand::Expenses {
            format: "auto".into(),
            map: vec![],
            cardholder: None,
            files: files("expenses"),
        },
    )
    .await;
    assert!(first.contains("ramp.csv (ramp): 11 rows, 10 stored"), "{first}");
    import(
        store,
        ImportCommand::Gateway { format: "auto".into(), map: vec![], files: files("gateway") },
    )
    .await;
    // Bob uses Cursor every day and Gemini, which nobody pays for; Ann's laptop never opens
    // ChatGPT, which she pays for.
    let bob =
        store.enroll(device("bob-mbp", "bob.kim@example.com"), [1; 32], NOV_15).await.unwrap();
    let ann =
        store.enroll(device("ann-mbp", "ann.lee@example.com"), [2; 32], NOV_15).await.unwrap();
    let batch = |id: &str, sightings: Vec<Sighting>| Batch {
        batch_id: id.into(),
        received: i64::try_from(sightings.len()).unwrap(),
        sightings,
        dropped: 0,
        evicted: 0,
        installs: Vec::new(),
    };
    store
        .ingest(
            bob,
            batch(
                "b1",
                vec![
                    seen("anysphere.cursor", "app", "com.todesktop.230313mzl4w4u92", "bob", NOV_15),
                    seen("anysphere.cursor", "tls_sni", "api2.cursor.sh", "bob", NOV_15),
                    seen("google.gemini", "dns", "gemini.google.com", "bob", NOV_15 - DAY),
                ],
            ),
            NOV_15,
        )
        .await
        .unwrap();
    store
        .ingest(
            ann,
            batch(
                "a1",
                vec![seen("google.gemini", "quic_sni", "gemini.google.com", "ann", NOV_15)],
            ),
            NOV_15,
        )
        .await
        .unwrap();
    for (product, status) in [
        ("openai.chatgpt", ReviewStatus::Sanctioned),
        ("midjourney.midjourney", ReviewStatus::Blocked),
    ] {
        let (r, audit) =
            review::decide(product, review::Decision::new(status, "sample".into()), "cli", NOV_15);
        store.set_review(r, audit).await.unwrap();
    }
}

pub(crate) async fn examples_import_twice_count_once_and_report(store: impl Store) {
    load(&store).await;
    let again = import(
        &store,
        ImportCommand::Expenses {
            format: "auto".into(),
            map: vec![],
            cardholder: None,
            files: files("expenses"),
        },
    )
    .await;
    assert!(again.lines().all(|l| l.contains(" 0 stored")), "{again}");
    let again = import(
        &store,
        ImportCommand::Gateway { format: "auto".into(), map: vec![], files: files("gateway") },
    )
    .await;
    assert!(again.lines().all(|l| l.contains(" 0 stored")), "{again}");

    let inventory = report(
        &store,
        ReportCommand::Inventory { format: "json".into(), since: None, as_of: Some(AS_OF.into()) },
    )
    .await;
    let list: InventoryList = serde_json::from_str(&inventory).unwrap();
    let row = |id: &str| list.rows.iter().find(|r| r.product == id).unwrap();
    let cursor = row("anysphere.cursor");
    assert_eq!(cursor.sources, ["app", "expense", "tls_sni"]);
    assert_eq!((cursor.devices, cursor.subscriptions, cursor.payers), (1, 2, 2));
    assert_eq!(row("openai.chatgpt").status.as_str(), "sanctioned");
    assert_eq!(row("google.gemini").sources, ["dns", "quic_sni"]);
    insta::assert_json_snapshot!("examples_inventory", list);

    let reconcile = report(
        &store,
        ReportCommand::Reconcile {
            format: "json".into(),
            since: None,
            idle_days: 30,
            as_of: Some(AS_OF.into()),
        },
    )
    .await;
    let rec: serde_json::Value = serde_json::from_str(&reconcile).unwrap();
    // Ann pays for sanctioned ChatGPT and her laptop never used it.
    assert_eq!(rec["idle_subscriptions"][0]["payer"], "ann.lee@example.com");
    assert_eq!(rec["used_not_paid"][0]["product"], "google.gemini");
    // Issue 17: three Claude payers moved to Team Standard pay for its minimum of five seats
    // (5 x 300.00 a year), which costs more than their three Pro subscriptions (720.00).
    let claude = rec["duplicate_subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["product"] == "anthropic.claude")
        .unwrap();
    assert_eq!(claude["payers"].as_array().unwrap().len(), 3);
    assert_eq!(claude["team_seats"], 5);
    assert_eq!(claude["team_annual"]["amount"], "1500.00");
    assert_eq!(claude["saving"]["amount"], "-780.00");
    assert!(claude["team_plan"].as_str().unwrap().contains("minimum 5 seats"), "{claude}");
    insta::assert_json_snapshot!("examples_reconcile", rec, { ".generated_at" => "[time]" });

    let csv = report(
        &store,
        ReportCommand::Reconcile {
            format: "csv".into(),
            since: None,
            idle_days: 30,
            as_of: Some(AS_OF.into()),
        },
    )
    .await;
    insta::assert_snapshot!("examples_reconcile_csv", csv);

    let ocsf = report(
        &store,
        ReportCommand::Inventory { format: "ocsf".into(), since: None, as_of: Some(AS_OF.into()) },
    )
    .await;
    let events: Vec<serde_json::Value> =
        ocsf.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let classes: Vec<i64> = events.iter().map(|e| e["class_uid"].as_i64().unwrap()).collect();
    assert!(classes.contains(&5020) && classes.contains(&4001) && classes.contains(&4003));
    assert!(classes.contains(&2004));
    insta::assert_json_snapshot!("examples_ocsf", events, { "[].time" => "[time]", "[].metadata.product.version" => "[version]" });
}

pub(crate) async fn malformed_rows_are_reported_and_good_rows_imported(store: impl Store) {
    let index = Arc::new(Index::new(Catalog::builtin().unwrap()));
    let csv = "Transaction Date,Post Date,Description,Category,Type,Amount,Memo\n\
               10/07/2026,10/08/2026,MIDJOURNEY INC.,Shopping,Sale,-30.00,\n\
               10/07/2026,10/08/2026,MIDJOURNEY INC.,Shopping,Sale,thirty,\n\
               \"10/08/2026,oops\n";
    let input = Input::Bytes { name: "upload.csv".into(), bytes: csv.as_bytes().to_vec() };
    let r = file::expenses(&store, index, input, None, &Default::default(), None, 0).await.unwrap();
    assert_eq!((r.format.as_str(), r.stored, r.tally.error_count), ("chase", 1, 2));
    assert_eq!(
        r.tally.errors[0].to_string(),
        "upload.csv:3: column \"Amount\": not a decimal amount: \"thirty\""
    );
    assert_eq!(store.expenses(None).await.unwrap().len(), 1);
}

pub(crate) async fn unknown_file_is_rejected_as_a_whole(store: impl Store) {
    let index = Arc::new(Index::new(Catalog::builtin().unwrap()));
    let input = Input::Bytes { name: "x.csv".into(), bytes: b"foo,bar\n1,2\n".to_vec() };
    let e =
        file::expenses(&store, index, input, None, &Default::default(), None, 0).await.unwrap_err();
    assert!(e.to_string().starts_with("x.csv: not a known expense export"), "{e}");
}

pub(crate) async fn ids_repeated_across_chunks_count_once_however_chunks_are_written(
    store: impl Store,
) {
    // Four chunks: ids 0..n, the same ids backwards (on PostgreSQL possibly written beside
    // the first, when the two may deadlock on a shared key), n new ids, and the first again.
    let n = file::CHUNK_ROWS;
    let ids: Vec<usize> = (0..n).chain((0..n).rev()).chain(n..2 * n).chain(0..n).collect();
    let mut csv = String::from("date,amount,currency,descriptor,payer_email,id\n");
    for id in &ids {
        csv.push_str(&format!("2026-11-01,20.00,USD,OPENAI *CHATGPT SUBSCR,a@example.com,t{id}\n"));
    }
    let index = Arc::new(Index::new(Catalog::builtin().unwrap()));
    let input = Input::Bytes { name: "repeats.csv".into(), bytes: csv.into_bytes() };
    let r = file::expenses(&store, index, input, None, &Default::default(), None, 0).await.unwrap();
    let n = u64::try_from(n).unwrap();
    assert_eq!((r.tally.rows, r.stored, r.duplicates), (4 * n, 2 * n, 2 * n));
    assert_eq!(store.expenses(None).await.unwrap().len() as u64, 2 * n);
}

macro_rules! cases {
    ($open:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn examples_import_twice_count_once_and_report() {
            let h = $open().await;
            super::examples_import_twice_count_once_and_report(h.store.clone()).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn malformed_rows_are_reported_and_good_rows_imported() {
            let h = $open().await;
            super::malformed_rows_are_reported_and_good_rows_imported(h.store.clone()).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn ids_repeated_across_chunks_count_once_however_chunks_are_written() {
            let h = $open().await;
            super::ids_repeated_across_chunks_count_once_however_chunks_are_written(
                h.store.clone(),
            )
            .await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn unknown_file_is_rejected_as_a_whole() {
            let h = $open().await;
            super::unknown_file_is_rejected_as_a_whole(h.store.clone()).await;
        }
    };
}

mod sqlite {
    cases!(super::harness::sqlite);
}

mod postgres {
    cases!(super::harness::postgres);
}
