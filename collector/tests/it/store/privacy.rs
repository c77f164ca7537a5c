//! Issue 21 on both stores: erasure (`person erase`) leaves no trace of the email or name in
//! any table or export and keeps every report total; retention deletes by age per kind, in
//! chunks, dry runs only count, and the audit log records both without the erased email.

use aiscout_collector::identity::{self, Identities, PrivacyMode, RevealError};
use aiscout_collector::join::{self, Purpose};
use aiscout_collector::model::{
    AuditFilter, Person, Role, ScimPerson, ScimResource, ScimWrite, Session, UsageFilter,
};
use aiscout_collector::person;
use aiscout_collector::review;
use aiscout_collector::scim;
use aiscout_collector::store::Store;
use aiscout_collector::store::retention::{Cutoffs, Kind};
use aiscout_wire::{InventoryQuery, ReviewStatus};

use super::harness::{self, Harness};
use super::{batch, device, expense, sighting, spend};

/// Every value of every table of the SQLite database, as text.
fn dump_sqlite(path: &std::path::Path) -> String {
    let conn = rusqlite::Connection::open(path).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut out = String::new();
    for t in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            out.push_str(&t);
            for i in 0..n {
                use rusqlite::types::ValueRef;
                out.push('|');
                match row.get_ref(i).unwrap() {
                    ValueRef::Null => out.push_str("NULL"),
                    ValueRef::Integer(v) => out.push_str(&v.to_string()),
                    ValueRef::Real(v) => out.push_str(&v.to_string()),
                    ValueRef::Text(b) | ValueRef::Blob(b) => {
                        out.push_str(&String::from_utf8_lossy(b));
                    }
                }
            }
            out.push('\n');
        }
    }
    out
}

/// Every row of every table of the PostgreSQL schema, as text.
async fn dump_postgres(schema: &str) -> String {
    let (client, conn) =
        tokio_postgres::connect(&harness::pg_url(), tokio_postgres::NoTls).await.unwrap();
    let driver = tokio::spawn(conn);
    let tables: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = $1 AND table_type = 'BASE TABLE'",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = String::new();
    for t in tables {
        for row in
            client.query(&format!("SELECT t::text FROM {schema}.\"{t}\" t"), &[]).await.unwrap()
        {
            out.push_str(&t);
            out.push('|');
            out.push_str(row.get::<_, &str>(0));
            out.push('\n');
        }
    }
    drop(client);
    driver.abort();
    out
}

trait Dump {
    async fn dump(&self) -> String;
    /// Tries to rewrite and to delete an audit entry outside the store; the errors.
    async fn tamper(&self) -> [String; 2];
}

impl Dump for Harness<aiscout_collector::store::sqlite::SqliteStore> {
    async fn dump(&self) -> String {
        dump_sqlite(&self.dir().unwrap().join("aiscout.db"))
    }

    async fn tamper(&self) -> [String; 2] {
        let conn = rusqlite::Connection::open(self.dir().unwrap().join("aiscout.db")).unwrap();
        ["UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"]
            .map(|sql| conn.execute(sql, []).unwrap_err().to_string())
    }
}

impl Dump for Harness<aiscout_collector::store::postgres::PgStore> {
    async fn dump(&self) -> String {
        dump_postgres(self.schema().unwrap()).await
    }

    async fn tamper(&self) -> [String; 2] {
        let schema = self.schema().unwrap();
        let (client, conn) =
            tokio_postgres::connect(&harness::pg_url(), tokio_postgres::NoTls).await.unwrap();
        let driver = tokio::spawn(conn);
        let mut out = [String::new(), String::new()];
        for (i, sql) in [
            format!("UPDATE {schema}.audit_log SET actor = 'x'"),
            format!("DELETE FROM {schema}.audit_log"),
        ]
        .iter()
        .enumerate()
        {
            let e = client.batch_execute(sql).await.unwrap_err();
            out[i] = e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_default();
        }
        drop(client);
        driver.abort();
        out
    }
}

/// Every report figure that must not move: the inventory, the spend views, the usage per
/// source, the totals per person (by position, since the person is renamed) and the counts.
async fn totals(store: &impl Store, now: i64) -> serde_json::Value {
    let catalog = aiscout_signatures::Catalog::builtin().unwrap();
    let facts = join::gather(store, UsageFilter::default(), now, Purpose::Inventory).await.unwrap();
    let inventory =
        join::inventory(&catalog, &Default::default(), &InventoryQuery::default(), &facts);
    let (sources, products) = store.usage(UsageFilter::default()).await.unwrap();
    let expense_sum: i64 = store.expenses(None).await.unwrap().iter().map(|l| l.amount_minor).sum();
    let mut per_person: Vec<String> = store
        .person_usage(None)
        .await
        .unwrap()
        .iter()
        .map(|u| format!("{:?} {:?} {:?}", u.products, u.expense_minor, u.gateway_nanos))
        .collect();
    per_person.sort();
    serde_json::json!({
        "inventory": serde_json::to_value(&inventory).unwrap(),
        "sources": format!("{sources:?}"),
        "products": format!("{products:?}"),
        "expense_sum": expense_sum,
        "devices": store.devices().await.unwrap().len(),
        "people": store.people().await.unwrap().len(),
        "per_person": per_person,
    })
}

async fn erase_case<S: Store>(h: &Harness<S>)
where
    Harness<S>: Dump,
{
    let store = &h.store;
    let now = 50_000;
    store
        .upsert_people(vec![
            Person {
                email: "ann.lee@example.com".into(),
                name: "Annabel Leeworth".into(),
                department: "Sales".into(),
                manager: Some("grace@example.com".into()),
            },
            Person {
                email: "bob@example.com".into(),
                name: "Bob Kim".into(),
                department: "Engineering".into(),
                manager: Some("Ann.Lee@example.com".into()),
            },
        ])
        .await
        .unwrap();
    // The owner as the directory spells it: the department rollups join owners to people by
    // exact email, and an erasure writes one tombstone to both, which would join an owner whose
    // case differed (and so change the department figures).
    let mut ann_device = device("ann-host-id", Some("ann.lee@example.com"));
    ann_device.hostname = "annabels-macbook".into();
    let ann = store.enroll(ann_device, [1; 32], 100).await.unwrap();
    let bob =
        store.enroll(device("bob-host-id", Some("bob@example.com")), [2; 32], 100).await.unwrap();
    let b = batch(
        "a1",
        vec![
            sighting("openai.chatgpt", "chatgpt.com", "annleeworth", 0, 4),
            sighting("anthropic.claude", "claude.ai", "annleeworth", 3_600, 2),
            sighting("openai.chatgpt", "chatgpt.com", "", 3_600, 1),
        ],
    );
    store.ingest(ann, b, 200).await.unwrap();
    let b = batch("b1", vec![sighting("openai.chatgpt", "chatgpt.com", "bob", 0, 9)]);
    store.ingest(bob, b, 200).await.unwrap();
    store.fold().await.unwrap();
    let mut anns = expense("e1", Some("openai.chatgpt"), 1_000, 2_500);
    anns.payer_email = "ann.lee@example.com".into();
    anns.payer_name = "Annabel Leeworth".into();
    let mut named_only = expense("e3", Some("openai.chatgpt"), 1_100, 700);
    named_only.payer_email = String::new();
    named_only.payer_name = "Annabel Leeworth".into();
    let mut bobs = expense("e2", Some("anthropic.claude"), 1_000, 2_000);
    bobs.payer_email = "bob@example.com".into();
    bobs.payer_name = "Bob Kim".into();
    store.add_expenses(vec![anns, named_only, bobs], 300).await.unwrap();
    let mut gw = spend("g1", Some("openai.api"), 1_000, 7_000_000);
    gw.user = "ann.lee@example.com".into();
    store
        .add_gateway_spend(vec![gw, spend("g2", Some("openai.api"), 1_000, 5)], 300)
        .await
        .unwrap();
    let decision = review::Decision::new(
        ReviewStatus::Sanctioned,
        "Asked for by ann.lee@example.com (Annabel Leeworth)".into(),
    );
    let (r, audit) = review::decide("openai.chatgpt", decision, "ann.lee@example.com", 400);
    store.set_review(r, audit).await.unwrap();
    let decision = review::Decision::new(ReviewStatus::Blocked, "no".into());
    let (r, audit) = review::decide("deepseek.chat", decision, "bob@example.com", 401);
    store.set_review(r, audit).await.unwrap();
    let session = Session {
        actor: "ann.lee@example.com".into(),
        role: Role::Admin,
        method: "oidc".into(),
        token: None,
        csrf: "c".into(),
        created_at: aiscout_wire::UnixSecs(500),
        last_seen: aiscout_wire::UnixSecs(500),
        expires_at: aiscout_wire::UnixSecs(now * 10),
    };
    let audit = aiscout_collector::console::session_audit(&session, "console.sign_in", 500);
    store.create_session([9; 32], session, audit).await.unwrap();
    store.fold().await.unwrap();

    let before = totals(store, now).await;
    let dump = h.dump().await;
    assert!(dump.contains("ann.lee@example.com") && dump.contains("Annabel Leeworth"));

    let erasure = person::erase(store, "ann.lee@example.com", "cli", "DSAR 2026-17").await.unwrap();
    let tombstone = erasure.tombstone.clone().unwrap();
    assert!(tombstone.starts_with("erased-") && tombstone.ends_with("@erased.invalid"));
    assert_eq!(erasure.rows.get("os_users"), Some(&1), "{:?}", erasure.rows);
    assert_eq!(erasure.rows.get("expense_lines"), Some(&2), "{:?}", erasure.rows);
    assert_eq!(erasure.rows.get("gateway_spend"), Some(&1), "{:?}", erasure.rows);
    assert_eq!(erasure.rows.get("console_sessions"), Some(&1), "{:?}", erasure.rows);
    store.fold().await.unwrap();

    // No trace in any table, in any case, nor of the OS user name or host name.
    let dump = h.dump().await.to_lowercase();
    for trace in ["ann.lee@example.com", "annabel", "leeworth", "annabels-macbook"] {
        assert!(!dump.contains(trace), "{trace} is still stored:\n{dump}");
    }
    assert!(dump.contains(&tombstone));
    assert!(dump.contains("bob@example.com"), "nobody else is erased");
    // Every total is what it was.
    assert_eq!(totals(store, now).await, before);
    // The export finds nothing under the email, and the tombstone's holds the amounts.
    let gone = person::export(store, "ann.lee@example.com").await.unwrap();
    assert!(gone.is_empty());
    let json = person::to_json(&person::export(store, &tombstone).await.unwrap()).to_string();
    assert!(json.contains("2500") && !json.to_lowercase().contains("annabel"), "{json}");
    // One audit entry with the reason and the tombstone, not the email.
    let erasures = store
        .audit_query(AuditFilter {
            subject: Some(tombstone.clone()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let entry = erasures.iter().find(|e| e.record.action == "person.erase").unwrap();
    assert_eq!(entry.record.actor, "cli");
    assert!(entry.record.after.as_deref().unwrap().contains("DSAR 2026-17"));
    // Bob's manager is the tombstone now.
    let people = store.people().await.unwrap();
    let bob_entry = people.iter().find(|p| p.email == "bob@example.com").unwrap();
    assert_eq!(bob_entry.manager.as_deref(), Some(tombstone.as_str()));
    // The audit log is still append-only for everything else.
    for error in h.tamper().await {
        assert!(error.contains("audit log is append-only"), "{error}");
    }
    let audit_count =
        store.audit_query(AuditFilter { limit: 1_000, ..Default::default() }).await.unwrap().len();

    // Idempotent: nothing left to erase, nothing written.
    let again = person::erase(store, "ann.lee@example.com", "cli", "DSAR 2026-17").await.unwrap();
    assert_eq!(again.tombstone, None);
    assert!(again.rows.is_empty());
    let after =
        store.audit_query(AuditFilter { limit: 1_000, ..Default::default() }).await.unwrap().len();
    assert_eq!(after, audit_count);
}

/// The rows of `table` in a dump that mention `needle`.
fn rows_with(dump: &str, table: &str, needle: &str) -> usize {
    let prefix = format!("{table}|");
    dump.lines().filter(|l| l.starts_with(&prefix) && l.contains(needle)).count()
}

/// An OS user name the person shares with someone else's device (`kiosk-shared`, like `admin`)
/// is renamed on the person's devices only; the other device keeps it, and every total stays.
async fn shared_os_user_case<S: Store>(h: &Harness<S>)
where
    Harness<S>: Dump,
{
    let store = &h.store;
    let now = 50_000;
    let ann =
        store.enroll(device("ann-host", Some("ann@example.com")), [1; 32], 100).await.unwrap();
    let bob =
        store.enroll(device("bob-host", Some("bob@example.com")), [2; 32], 100).await.unwrap();
    let b = batch(
        "a1",
        vec![
            sighting("openai.chatgpt", "chatgpt.com", "kiosk-shared", 0, 4),
            sighting("anthropic.claude", "claude.ai", "kiosk-shared", 0, 2),
            sighting("openai.chatgpt", "chatgpt.com", "annsown", 0, 1),
        ],
    );
    store.ingest(ann, b, 200).await.unwrap();
    let b = batch("b1", vec![sighting("openai.chatgpt", "chatgpt.com", "kiosk-shared", 0, 9)]);
    store.ingest(bob, b, 200).await.unwrap();
    store.fold().await.unwrap();
    let before = totals(store, now).await;
    let dump = h.dump().await;
    assert_eq!(rows_with(&dump, "sightings", "kiosk-shared"), 3, "{dump}");

    let erasure = person::erase(store, "ann@example.com", "cli", "DSAR 7").await.unwrap();
    assert_eq!(erasure.rows.get("os_users"), Some(&2), "{:?}", erasure.rows);
    store.fold().await.unwrap();
    let dump = h.dump().await;
    // Bob's sighting keeps its name; Ann's two are renamed, as is her own name everywhere.
    assert_eq!(rows_with(&dump, "sightings", "kiosk-shared"), 1, "{dump}");
    assert_eq!(rows_with(&dump, "usage_device", "kiosk-shared"), 1, "{dump}");
    assert!(!dump.contains("annsown"), "{dump}");
    // Claude was seen under the shared name on Ann's device only: that key is renamed too.
    assert_eq!(rows_with(&dump, "usage_product_user", "kiosk-shared"), 1, "{dump}");
    assert_eq!(totals(store, now).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_renames_a_shared_os_user_on_the_persons_devices_only_on_sqlite() {
    shared_os_user_case(&harness::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_renames_a_shared_os_user_on_the_persons_devices_only_on_postgres() {
    shared_os_user_case(&harness::postgres().await).await;
}

async fn retention_case<S: Store>(h: &Harness<S>) {
    let store = &h.store;
    let day = 86_400;
    let d = store.enroll(device("h1", Some("ann@example.com")), [1; 32], day).await.unwrap();
    // Sightings last seen on days 1, 10 and 20; expense lines on days 2 and 30; gateway rows
    // on days 3 and 40.
    let b = batch(
        "r1",
        vec![
            sighting("openai.chatgpt", "chatgpt.com", "u", day, 1),
            sighting("openai.chatgpt", "chatgpt.com", "u", 10 * day, 2),
            sighting("anthropic.claude", "claude.ai", "u", 20 * day, 3),
        ],
    );
    store.ingest(d, b, 21 * day).await.unwrap();
    store.fold().await.unwrap();
    store
        .add_expenses(
            vec![
                expense("x1", Some("openai.chatgpt"), 2 * day, 100),
                expense("x2", Some("openai.chatgpt"), 30 * day, 200),
            ],
            31 * day,
        )
        .await
        .unwrap();
    store
        .add_gateway_spend(
            vec![
                spend("y1", Some("openai.api"), 3 * day, 5),
                spend("y2", Some("openai.api"), 40 * day, 7),
            ],
            41 * day,
        )
        .await
        .unwrap();
    let inventory_before = store.usage(UsageFilter::default()).await.unwrap();
    let cutoffs = Cutoffs {
        sightings: Some(15 * day),
        expense_lines: Some(10 * day),
        gateway_rows: Some(10 * day),
        audit_entries: None,
    };
    // A dry run counts and deletes nothing.
    let dry = store.apply_retention(cutoffs, true).await.unwrap();
    let counts: Vec<(Kind, u64)> = dry.rows.iter().map(|(k, _, n)| (*k, *n)).collect();
    assert_eq!(counts, [(Kind::Sightings, 2), (Kind::ExpenseLines, 1), (Kind::GatewayRows, 1)]);
    assert_eq!(store.expenses(None).await.unwrap().len(), 2);
    let audit_before =
        store.audit_query(AuditFilter { limit: 1_000, ..Default::default() }).await.unwrap().len();
    assert_eq!(store.apply_retention(cutoffs, true).await.unwrap(), dry);

    let done = store.apply_retention(cutoffs, false).await.unwrap();
    assert_eq!(done.rows, dry.rows);
    let lines: Vec<String> =
        store.expenses(None).await.unwrap().into_iter().map(|l| l.dedupe_key).collect();
    assert_eq!(lines, ["x2"]);
    let left: Vec<(String, i64)> = store
        .device_products(device("h1", None).host_id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.product, s.count))
        .collect();
    assert_eq!(left, [("anthropic.claude".to_owned(), 3)]);
    // The rollups keep the totals the inventory reports.
    store.fold().await.unwrap();
    assert_eq!(store.usage(UsageFilter::default()).await.unwrap(), inventory_before);
    // One audit entry for the run; a second run finds nothing and writes none.
    let audit =
        store.audit_query(AuditFilter { limit: 1_000, ..Default::default() }).await.unwrap();
    assert_eq!(audit.len(), audit_before + 1);
    assert_eq!(audit[0].record.action, "retention.apply");
    let again = store.apply_retention(cutoffs, false).await.unwrap();
    assert_eq!(again.total(), 0);

    // Audit entries: everything before the cutoff goes, through the append-only guard, and
    // the run's own entry stays.
    let newest = audit[0].record.at.get();
    let only_audit = Cutoffs { audit_entries: Some(newest), ..Cutoffs::default() };
    let run = store.apply_retention(only_audit, false).await.unwrap();
    assert_eq!(run.rows, [(Kind::AuditEntries, newest, audit_before as u64)]);
    let kept = store.audit_query(AuditFilter { limit: 1_000, ..Default::default() }).await.unwrap();
    assert!(kept.iter().all(|e| e.record.at.get() >= newest), "{kept:?}");
    assert!(kept.iter().any(|e| e.record.action == "retention.apply"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_leaves_no_trace_and_keeps_totals_on_sqlite() {
    erase_case(&harness::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_leaves_no_trace_and_keeps_totals_on_postgres() {
    erase_case(&harness::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_by_age_in_chunks_and_keeps_rollups_on_sqlite() {
    retention_case(&harness::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_by_age_in_chunks_and_keeps_rollups_on_postgres() {
    retention_case(&harness::postgres().await).await;
}

/// A database keeps people one way (issue 21). One without people takes whatever mode it is
/// opened with; once it holds people (written before the mode was recorded, as in a database
/// from an older collector) the mode is read off them, recorded and kept: plain identities make
/// it plain, pseudonyms pseudonymous.
async fn privacy_mode_case<S: Store>(empty: &Harness<S>, plain: &Harness<S>, pseudo: &Harness<S>) {
    let (p, q) = (PrivacyMode::Plain, PrivacyMode::Pseudonymous);
    assert_eq!(empty.store.privacy_mode(q, 1).await.unwrap(), q);
    assert_eq!(empty.store.privacy_mode(p, 2).await.unwrap(), p, "no people, nothing recorded");

    protect(&plain.store, p);
    plain.store.enroll(device("h1", Some("ann@example.com")), [1; 32], 10).await.unwrap();
    assert_eq!(plain.store.privacy_mode(q, 20).await.unwrap(), p);
    // Recorded: the answer stays once the people are gone (the owner removed, say).
    plain.store.enroll(device("h1", None), [1; 32], 30).await.unwrap();
    assert_eq!(plain.store.privacy_mode(q, 31).await.unwrap(), p);

    protect(&pseudo.store, q);
    pseudo.store.enroll(device("h2", Some("bob@example.com")), [2; 32], 10).await.unwrap();
    assert_eq!(pseudo.store.privacy_mode(p, 20).await.unwrap(), q);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_keeps_people_one_way_on_sqlite() {
    let (a, b, c) = (harness::sqlite().await, harness::sqlite().await, harness::sqlite().await);
    privacy_mode_case(&a, &b, &c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_keeps_people_one_way_on_postgres() {
    let (a, b, c) =
        (harness::postgres().await, harness::postgres().await, harness::postgres().await);
    privacy_mode_case(&a, &b, &c).await;
}

/// The identity key a test store protects identities with (issue 21), in `mode`.
fn protect(store: &impl Store, mode: PrivacyMode) {
    store.protect_identities(std::sync::Arc::new(Identities::new(&[42; 32], mode)));
}

/// The raw bytes of the SQLite database (after a checkpoint that empties the log) and of
/// anything left beside it, lowercased as text.
fn raw_sqlite(dir: &std::path::Path) -> String {
    let conn = rusqlite::Connection::open(dir.join("aiscout.db")).unwrap();
    // The store is still open: a checkpoint that meets one of its readers or its own
    // checkpointer answers busy and leaves the WAL (old frames included) as it was, so the
    // scan below would read what the erasure already overwrote. Retry until it is complete.
    let mut busy = 1;
    for _ in 0..200 {
        busy =
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0)).unwrap();
        if busy == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert_eq!(busy, 0, "the WAL checkpoint stayed busy through 200 tries");
    drop(conn);
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("aiscout.db")) {
            out.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()).to_lowercase());
        }
    }
    out
}

/// Every plain identity the pseudonymous case stores (emails, OS users, names, and the SCIM
/// user's userName, names and work email).
const PLAIN: [&str; 13] = [
    "ann.lee@example.com",
    "bob@example.com",
    "grace@example.com",
    "annabel leeworth",
    "bob kim",
    "annleeworth",
    "bobk",
    "payer.only@example.com",
    "gw.user@example.com",
    "scim.user@example.com",
    "scimona",
    "provisionova",
    "scimona.work@example.com",
];

/// Writes a SCIM user as `api::scim` does (`scim::normalise`, `scim::person`, one
/// `scim_write`): version 1 creates it, a later version replaces the stored one.
async fn scim_user(
    store: &impl Store,
    id: &str,
    document: serde_json::Value,
    previous: Option<&ScimResource>,
) -> ScimResource {
    let (body, name) = scim::normalise(scim::Kind::User, document).unwrap();
    let previous_email = previous.and_then(|p| {
        let old: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&p.resource).unwrap();
        scim::person(&old, |_| None).map(|(p, _)| p.email)
    });
    let person = scim::person(&body, |_| None).map(|(person, active)| ScimPerson {
        person,
        active,
        previous_email,
    });
    let resource = ScimResource {
        kind: "User",
        id: id.into(),
        resource: serde_json::Value::Object(body).to_string(),
        version: previous.map_or(1, |p| p.version + 1),
        created_at: aiscout_wire::UnixSecs(100),
        modified_at: aiscout_wire::UnixSecs(100 + previous.map_or(0, |p| p.version)),
    };
    let audit = aiscout_collector::model::AuditRecord {
        at: aiscout_wire::UnixSecs(100),
        actor: "entra".into(),
        action: "scim.create".into(),
        subject: format!("User/{id}"),
        before: None,
        after: None,
    };
    let write = ScimWrite { resource: resource.clone(), name, person, audit };
    assert!(store.scim_write(write).await.unwrap());
    resource
}

/// The SCIM user the pseudonymous case provisions, as Entra ID sends one.
fn scim_document() -> serde_json::Value {
    serde_json::json!({
        "schemas": [scim::USER_SCHEMA, scim::ENTERPRISE_SCHEMA],
        "userName": "Scim.User@example.com",
        "name": {"givenName": "Scimona", "familyName": "Provisionova"},
        "displayName": "Scimona Provisionova",
        "emails": [{"value": "scimona.work@example.com", "type": "work"}],
        "active": true,
        scim::ENTERPRISE_SCHEMA: {"department": "Finance"},
    })
}

/// The same SCIM user, people, devices, sightings, expense lines and gateway rows in any
/// store.
async fn people_and_usage(store: &impl Store) {
    scim_user(store, "u-1", scim_document(), None).await;
    store
        .upsert_people(vec![
            Person {
                email: "ann.lee@example.com".into(),
                name: "Annabel Leeworth".into(),
                department: "Sales".into(),
                manager: Some("grace@example.com".into()),
            },
            Person {
                email: "bob@example.com".into(),
                name: "Bob Kim".into(),
                department: "Engineering".into(),
                manager: Some("ann.lee@example.com".into()),
            },
        ])
        .await
        .unwrap();
    let ann = store.enroll(device("ann-host", Some("ann.lee@example.com")), [1; 32], 100).await;
    let bob = store.enroll(device("bob-host", Some("bob@example.com")), [2; 32], 100).await;
    let b = batch(
        "a1",
        vec![
            sighting("openai.chatgpt", "chatgpt.com", "annleeworth", 0, 4),
            sighting("anthropic.claude", "claude.ai", "annleeworth", 3_600, 2),
        ],
    );
    store.ingest(ann.unwrap(), b, 200).await.unwrap();
    let b = batch("b1", vec![sighting("openai.chatgpt", "chatgpt.com", "bobk", 0, 9)]);
    store.ingest(bob.unwrap(), b, 200).await.unwrap();
    let mut anns = expense("e1", Some("openai.chatgpt"), 1_000, 2_500);
    anns.payer_email = "ann.lee@example.com".into();
    anns.payer_name = "Annabel Leeworth".into();
    let mut other = expense("e2", Some("anthropic.claude"), 1_000, 2_000);
    other.payer_email = "payer.only@example.com".into();
    let mut bobs = expense("e3", Some("anthropic.claude"), 1_000, 1_500);
    bobs.payer_email = "bob@example.com".into();
    bobs.payer_name = "Bob Kim".into();
    store.add_expenses(vec![anns, other, bobs], 300).await.unwrap();
    let mut g1 = spend("g1", Some("openai.api"), 1_000, 7_000_000);
    g1.user = "ann.lee@example.com".into();
    let mut g2 = spend("g2", Some("openai.api"), 1_000, 5);
    g2.user = "gw.user@example.com".into();
    store.add_gateway_spend(vec![g1, g2], 300).await.unwrap();
    store.fold().await.unwrap();
}

async fn pseudonymous_case<S: Store>(plain: &Harness<S>, pseudo: &Harness<S>)
where
    Harness<S>: Dump,
{
    let now = 50_000;
    protect(&plain.store, PrivacyMode::Plain);
    protect(&pseudo.store, PrivacyMode::Pseudonymous);
    people_and_usage(&plain.store).await;
    people_and_usage(&pseudo.store).await;
    // Plain mode stores the identities (so the scan below can find them at all)...
    let dump = plain.dump().await.to_lowercase();
    for identity in PLAIN {
        assert!(dump.contains(identity), "{identity} is missing from the plain store");
    }
    // ...pseudonymous mode none, in any table.
    let dump = pseudo.dump().await.to_lowercase();
    for identity in PLAIN {
        assert!(!dump.contains(identity), "{identity} is stored in pseudonymous mode:\n{dump}");
    }
    if let Some(dir) = pseudo.dir() {
        let raw = raw_sqlite(dir);
        for identity in PLAIN {
            assert!(!raw.contains(identity), "{identity} is in the SQLite file's bytes");
        }
    }
    // Every report figure, departments included, is the same in both modes.
    assert_eq!(totals(&pseudo.store, now).await, totals(&plain.store, now).await);
    // SCIM answers the identity provider as before: the filter finds the user by userName,
    // the read gives the document as written, and a PATCH of it replaces it.
    for h in [plain, pseudo] {
        let (n, page) =
            h.store.scim_list("User", Some("scim.user@example.com".into()), 0, 10).await.unwrap();
        assert_eq!((n, page.len()), (1, 1));
        let stored = h.store.scim_get("User", "u-1".into()).await.unwrap().unwrap();
        assert_eq!(page[0], stored);
        let mut document: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&stored.resource).unwrap();
        assert_eq!(document["userName"], "Scim.User@example.com");
        let patch = serde_json::json!({
            "schemas": [scim::PATCH_SCHEMA],
            "Operations": [{"op": "replace", "path": "displayName", "value": "Scimona P."}],
        });
        scim::patch(&mut document, &patch).unwrap();
        let patched =
            scim_user(&h.store, "u-1", serde_json::Value::Object(document), Some(&stored)).await;
        let read = h.store.scim_get("User", "u-1".into()).await.unwrap().unwrap();
        assert_eq!(read, patched);
        assert!(read.resource.contains("Scimona P."), "{}", read.resource);
        let (n, _) = h.store.scim_list("User", None, 0, 10).await.unwrap();
        assert_eq!(n, 1);
    }
    let dump = pseudo.dump().await.to_lowercase();
    for identity in PLAIN {
        assert!(!dump.contains(identity), "{identity} is stored after the SCIM PATCH:\n{dump}");
    }
    let ids = Identities::new(&[42; 32], PrivacyMode::Pseudonymous);
    let ann = ids.pseudonym("ann.lee@example.com");
    let people = pseudo.store.people().await.unwrap();
    let entry = people.iter().find(|p| p.email == ann).unwrap();
    assert_eq!((entry.department.as_str(), entry.name.starts_with("person-")), ("Sales", true));

    // A reveal needs a reason, a pseudonym seen with the product, and pseudonymous mode.
    let refused = identity::reveal(&pseudo.store, "openai.chatgpt", &ann, "root@x", " ", now).await;
    assert!(matches!(&refused, Err(RevealError::Refused(why)) if why.contains("reason")));
    let bob = ids.pseudonym("bob@example.com");
    let refused = identity::reveal(&pseudo.store, "openai.api", &bob, "root@x", "DSAR", now).await;
    assert!(matches!(&refused, Err(RevealError::Refused(why)) if why.contains("no device")));
    let refused =
        identity::reveal(&plain.store, "openai.chatgpt", &ann, "root@x", "ticket 7", now).await;
    assert!(matches!(&refused, Err(RevealError::Refused(why)) if why.contains("pseudonymous")));
    let reveals = |log: Vec<aiscout_collector::model::AuditEntry>| {
        log.into_iter().filter(|e| e.record.action == "person.reveal").collect::<Vec<_>>()
    };
    let log = pseudo.store.audit_query(AuditFilter { limit: 1_000, ..Default::default() });
    assert!(reveals(log.await.unwrap()).is_empty(), "a refused reveal is not audited");
    let shown =
        identity::reveal(&pseudo.store, "openai.chatgpt", &ann, "root@x", "ticket 7", now).await;
    assert_eq!(shown.unwrap(), "ann.lee@example.com");
    let user = ids.pseudonym("annleeworth");
    let shown =
        identity::reveal(&pseudo.store, "anthropic.claude", &user, "root@x", "ticket 8", now);
    assert_eq!(shown.await.unwrap(), "annleeworth");
    // Payers and gateway end users of the product too, and only of that product.
    let payer = ids.pseudonym("payer.only@example.com");
    let refused =
        identity::reveal(&pseudo.store, "openai.chatgpt", &payer, "root@x", "ticket 10", now);
    assert!(matches!(refused.await, Err(RevealError::Refused(why)) if why.contains("paid no")));
    let shown =
        identity::reveal(&pseudo.store, "anthropic.claude", &payer, "root@x", "ticket 10", now);
    assert_eq!(shown.await.unwrap(), "payer.only@example.com");
    let gateway_user = ids.pseudonym("gw.user@example.com");
    let shown =
        identity::reveal(&pseudo.store, "openai.api", &gateway_user, "root@x", "ticket 11", now);
    assert_eq!(shown.await.unwrap(), "gw.user@example.com");
    let log = pseudo.store.audit_query(AuditFilter { limit: 1_000, ..Default::default() });
    let log = reveals(log.await.unwrap());
    assert_eq!(log.len(), 4, "{log:?}");
    let gateway_reveal = log.iter().find(|e| e.record.subject == gateway_user).unwrap();
    assert!(gateway_reveal.record.after.as_deref().unwrap().contains("ticket 11"));
    let first = log.iter().find(|e| e.record.subject == ann).unwrap();
    assert_eq!(first.record.actor, "root@x");
    let after = first.record.after.as_deref().unwrap();
    assert!(after.contains("openai.chatgpt") && after.contains("ticket 7"), "{after}");
    let dump = pseudo.dump().await.to_lowercase();
    assert!(!dump.contains("ann.lee@example.com"), "a reveal stores no identity");

    // The person's export and erasure find them by their email.
    let record = person::export(&pseudo.store, "ann.lee@example.com").await.unwrap();
    assert_eq!((record.devices.len(), record.expenses.len()), (1, 1));
    let erasure = person::erase(&pseudo.store, "ann.lee@example.com", "cli", "DSAR").await.unwrap();
    assert!(erasure.tombstone.is_some());
    let refused =
        identity::reveal(&pseudo.store, "openai.chatgpt", &ann, "root@x", "ticket 9", now).await;
    assert!(refused.is_err(), "an erased person cannot be revealed");
    // Erasing the SCIM user removes their resource (the identity provider provisions them
    // again, under the tombstone).
    let erasure = person::erase(&pseudo.store, "scim.user@example.com", "cli", "DSAR").await;
    assert_eq!(erasure.unwrap().rows.get("scim_resources"), Some(&1));
    assert_eq!(pseudo.store.scim_get("User", "u-1".into()).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pseudonymous_mode_stores_no_identity_keeps_totals_and_audits_reveals_on_sqlite() {
    pseudonymous_case(&harness::sqlite().await, &harness::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pseudonymous_mode_stores_no_identity_keeps_totals_and_audits_reveals_on_postgres() {
    pseudonymous_case(&harness::postgres().await, &harness::postgres().await).await;
}

/// After an erasure, a people import, an expense line, a gateway row or an enrollment that
/// names the person stores the tombstone, in either mode.
async fn erased_stay_erased_case<S: Store>(h: &Harness<S>, mode: PrivacyMode)
where
    Harness<S>: Dump,
{
    let store = &h.store;
    protect(store, mode);
    people_and_usage(store).await;
    let erasure = person::erase(store, "ann.lee@example.com", "cli", "DSAR").await.unwrap();
    let tombstone = erasure.tombstone.unwrap();
    store
        .upsert_people(vec![Person {
            email: "ANN.LEE@example.com".into(),
            name: "Annabel Leeworth".into(),
            department: "Sales".into(),
            manager: None,
        }])
        .await
        .unwrap();
    let mut line = expense("e9", Some("openai.chatgpt"), 2_000, 100);
    line.payer_email = "ann.lee@example.com".into();
    line.payer_name = "Annabel Leeworth".into();
    store.add_expenses(vec![line], 400).await.unwrap();
    let mut row = spend("g9", Some("openai.api"), 2_000, 9);
    row.user = "Ann.Lee@example.com".into();
    store.add_gateway_spend(vec![row], 400).await.unwrap();
    let new_host = store.enroll(device("ann-new-host", Some("ann.lee@example.com")), [7; 32], 500);
    let new_host = new_host.await.unwrap();
    // Her OS user name arriving again, from her old device and from her new one, is stored as
    // the name the erasure gave it; the same name on someone else's device is not hers.
    let old_host = store.enroll(device("ann-host", Some("ann.lee@example.com")), [8; 32], 500);
    let old_host = old_host.await.unwrap();
    for (host, id) in [(old_host, "a9"), (new_host, "a10")] {
        let b = batch(id, vec![sighting("openai.chatgpt", "chatgpt.com", "AnnLeeworth", 600, 1)]);
        store.ingest(host, b, 700).await.unwrap();
    }
    let bob = store.enroll(device("bob-host", Some("bob@example.com")), [9; 32], 500);
    let b = batch("b9", vec![sighting("openai.chatgpt", "chatgpt.com", "annleeworth", 600, 1)]);
    store.ingest(bob.await.unwrap(), b, 700).await.unwrap();
    store.fold().await.unwrap();
    let dump = h.dump().await.to_lowercase();
    let ids = Identities::new(&[42; 32], mode);
    let stored_bob_user = match mode {
        PrivacyMode::Plain => "annleeworth".to_owned(),
        PrivacyMode::Pseudonymous => ids.pseudonym("annleeworth"),
    };
    assert_eq!(rows_with(&dump, "sightings", &stored_bob_user), 1, "{dump}");
    // Bob's row aside, the name is gone (a second time too: the sightings above changed
    // nothing about it).
    for (host, id) in [(old_host, "a11"), (new_host, "a12")] {
        let b = batch(id, vec![sighting("anthropic.claude", "claude.ai", "annleeworth", 800, 1)]);
        store.ingest(host, b, 900).await.unwrap();
    }
    store.fold().await.unwrap();
    let dump = h.dump().await.to_lowercase();
    assert_eq!(rows_with(&dump, "sightings", &stored_bob_user), 1, "{dump}");
    assert!(rows_with(&dump, "sightings", "erased-") >= 2, "{dump}");
    for trace in ["ann.lee@example.com", "annabel"] {
        assert!(!dump.contains(trace), "{trace} came back:\n{dump}");
    }
    assert!(!dump.contains(&ids.pseudonym("ann.lee@example.com")), "the pseudonym came back");
    assert!(rows_with(&dump, "expense_lines", &tombstone) >= 2, "{dump}");
    assert!(rows_with(&dump, "gateway_spend", &tombstone) >= 2, "{dump}");
    assert!(rows_with(&dump, "devices", &tombstone) >= 2, "{dump}");
    assert!(!dump.contains("ann.lee"), "no hash either");
    if let Some(dir) = h.dir() {
        assert!(!raw_sqlite(dir).contains("ann.lee@example.com"));
    }
    assert!(dump.contains("bob-host"), "others are stored as before");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erased_people_do_not_return_on_sqlite() {
    erased_stay_erased_case(&harness::sqlite().await, PrivacyMode::Plain).await;
    erased_stay_erased_case(&harness::sqlite().await, PrivacyMode::Pseudonymous).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erased_people_do_not_return_on_postgres() {
    erased_stay_erased_case(&harness::postgres().await, PrivacyMode::Plain).await;
    erased_stay_erased_case(&harness::postgres().await, PrivacyMode::Pseudonymous).await;
}
