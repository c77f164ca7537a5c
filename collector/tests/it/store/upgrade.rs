//! Upgrades: a database left at an older schema version, with data in it, opened by this
//! build. Migration 5 rebuilds SQLite's `api_tokens` (to allow the viewer role) and adds
//! columns to `reviews`; migration 6 rebuilds SQLite's `api_tokens` and `console_sessions` (to
//! allow the policy role). What was stored before must read back the same.

use aiscout_collector::model::{AuditFilter, Role, Token};
use aiscout_collector::review;
use aiscout_collector::store::{Store, postgres, sqlite};

/// The version the data below is written at.
const BEFORE: usize = 4;

/// Rows of a version-4 database; `{hash}` and `{other}` are 32-byte literals (of `9`s and
/// `8`s) in the dialect's form.
const DATA: &str = "
    INSERT INTO api_tokens (name, role, token_hash, created_at, revoked_at)
    VALUES ('adm', 'admin', {other}, 1, 5), ('sec', 'security', {hash}, 2, NULL);
    INSERT INTO reviews (product, status, note, reviewed_by, reviewed_at)
    VALUES ('openai.chatgpt', 'sanctioned', 'ok', 'sec', 3);
    INSERT INTO audit_log (at, actor, action, subject, before_json, after_json)
    VALUES (3, 'sec', 'review.set', 'openai.chatgpt', NULL, '{}');";

fn data(hex: fn(u8) -> String) -> String {
    DATA.replace("{hash}", &hex(9)).replace("{other}", &hex(8))
}

/// What a version-4 database holds, read through this build; then a viewer token is stored.
async fn check_upgraded(store: impl Store) {
    let sec = Token {
        name: "sec".into(),
        role: Role::Security,
        created_at: aiscout_wire::UnixSecs(2),
        revoked_at: None,
    };
    let adm = Token {
        name: "adm".into(),
        role: Role::Admin,
        created_at: aiscout_wire::UnixSecs(1),
        revoked_at: Some(aiscout_wire::UnixSecs(5)),
    };
    assert_eq!(store.tokens().await.unwrap(), vec![adm, sec.clone()]);
    assert_eq!(store.token_by_hash([9; 32]).await.unwrap(), Some(sec));
    let r = store.review("openai.chatgpt".into()).await.unwrap().unwrap();
    assert_eq!(
        (r.status.as_str(), r.note.as_str(), r.reviewed_at),
        ("sanctioned", "ok", aiscout_wire::UnixSecs(3))
    );
    assert_eq!((r.business_owner.as_str(), r.alternative.as_str(), r.renewal), ("", "", None));
    let viewer = Token {
        name: "view".into(),
        role: Role::Viewer,
        created_at: aiscout_wire::UnixSecs(6),
        revoked_at: None,
    };
    store
        .create_token(viewer.clone(), [7; 32], review::token_created(&viewer, "cli"))
        .await
        .unwrap();
    assert_eq!(store.token_by_hash([7; 32]).await.unwrap(), Some(viewer));
    let log = store.audit_query(AuditFilter { limit: 10, ..AuditFilter::default() }).await.unwrap();
    let actions: Vec<_> = log.iter().map(|e| e.record.action.as_str()).collect();
    assert_eq!(actions, ["token.create", "review.set"]);
}

#[tokio::test]
async fn sqlite_version_4_data_reads_back_after_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aiscout.db");
    {
        let conn = sqlite::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (
                version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
        )
        .unwrap();
        for m in &sqlite::MIGRATIONS[..BEFORE] {
            conn.execute_batch(m.sql).unwrap();
            conn.execute("INSERT INTO schema_migrations VALUES (?1, 0)", [m.version]).unwrap();
        }
        conn.execute_batch(&data(|b| format!("X'{}'", format!("{b:02x}").repeat(32)))).unwrap();
    }
    let store = sqlite::SqliteStore::open(&path).await.unwrap();
    check_upgraded(store.clone()).await;
    // The rebuilt table is whole: its unique keys hold and nothing dangles.
    let conn = sqlite::open(&path).unwrap();
    let fk: Vec<String> = conn
        .prepare("PRAGMA foreign_key_check")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(fk.is_empty(), "{fk:?}");
    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(integrity, "ok");
    let taken = Token {
        name: "x".into(),
        role: Role::Admin,
        created_at: aiscout_wire::UnixSecs(9),
        revoked_at: None,
    };
    let same_hash =
        store.create_token(taken.clone(), [9; 32], review::token_created(&taken, "cli"));
    assert!(same_hash.await.is_err(), "token_hash is still unique");
}

/// Drops the test schema however the test ends.
struct Schema(String);

impl Drop for Schema {
    fn drop(&mut self) {
        super::harness::drop_schema(&self.0);
    }
}

#[tokio::test]
async fn postgres_version_4_data_reads_back_after_the_upgrade() {
    let (url, schema) = super::harness::pg_schema().await;
    let _schema = Schema(schema);
    {
        let (mut client, conn) =
            tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        let driver = tokio::spawn(conn);
        client
            .batch_execute(
                "CREATE TABLE schema_migrations (
                    version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
            )
            .await
            .unwrap();
        for m in &postgres::MIGRATIONS[..BEFORE] {
            let tx = client.transaction().await.unwrap();
            tx.batch_execute(m.sql).await.unwrap();
            let version = i32::try_from(m.version).unwrap();
            tx.execute("INSERT INTO schema_migrations VALUES ($1, 0)", &[&version]).await.unwrap();
            tx.commit().await.unwrap();
        }
        let hex = |b: u8| format!("'\\x{}'::bytea", format!("{b:02x}").repeat(32));
        client.batch_execute(&data(hex)).await.unwrap();
        drop(client);
        driver.await.unwrap().unwrap();
    }
    let store = postgres::PgStore::open(&url).await.unwrap();
    check_upgraded(store).await;
}

/// Rows of a version-5 database (a viewer token, a session signed in with it), for migration
/// 6, which rebuilds SQLite's `api_tokens` and `console_sessions` to allow the policy role.
const DATA_5: &str = "
    INSERT INTO api_tokens (name, role, token_hash, created_at, revoked_at)
    VALUES ('view', 'viewer', {hash}, 2, NULL), ('old', 'admin', {other}, 1, 4);
    INSERT INTO console_sessions (session_hash, actor, role, method, token, csrf, created_at,
        last_seen, expires_at)
    VALUES ({other}, 'view', 'viewer', 'token', 'view', 'c5rf', 10, 20, 1000);";

/// What a version-5 database holds, read through this build; then a policy token and a
/// policy-role session row are stored (the console never writes one; the CHECK allows it).
async fn check_upgraded_5(store: impl Store) {
    let view = Token {
        name: "view".into(),
        role: Role::Viewer,
        created_at: aiscout_wire::UnixSecs(2),
        revoked_at: None,
    };
    assert_eq!(store.token_by_hash([9; 32]).await.unwrap(), Some(view));
    let s = store.session([8; 32], 30).await.unwrap().unwrap();
    assert_eq!(
        (s.actor.as_str(), s.role, s.csrf.as_str(), s.last_seen),
        ("view", Role::Viewer, "c5rf", aiscout_wire::UnixSecs(20))
    );
    let policy = Token {
        name: "dns".into(),
        role: Role::Policy,
        created_at: aiscout_wire::UnixSecs(6),
        revoked_at: None,
    };
    store
        .create_token(policy.clone(), [7; 32], review::token_created(&policy, "cli"))
        .await
        .unwrap();
    assert_eq!(store.token_by_hash([7; 32]).await.unwrap(), Some(policy));
    let session = aiscout_collector::model::Session {
        actor: "dns".into(),
        role: Role::Policy,
        method: "token".into(),
        token: Some("dns".into()),
        csrf: "x".into(),
        created_at: aiscout_wire::UnixSecs(40),
        last_seen: aiscout_wire::UnixSecs(40),
        expires_at: aiscout_wire::UnixSecs(2_000),
    };
    let login = aiscout_collector::model::AuditRecord {
        at: aiscout_wire::UnixSecs(40),
        actor: "dns".into(),
        action: "session.login".into(),
        subject: "dns".into(),
        before: None,
        after: None,
    };
    store.create_session([6; 32], session.clone(), login).await.unwrap();
    assert_eq!(store.session([6; 32], 50).await.unwrap(), Some(session));
    // The rebuilt session indexes serve the purge.
    assert_eq!(store.purge_sessions(1_500, 0).await.unwrap(), 1);
}

#[tokio::test]
async fn sqlite_version_5_data_reads_back_after_the_policy_role_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aiscout.db");
    {
        let conn = sqlite::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (
                version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
        )
        .unwrap();
        for m in &sqlite::MIGRATIONS[..5] {
            conn.execute_batch(m.sql).unwrap();
            conn.execute("INSERT INTO schema_migrations VALUES (?1, 0)", [m.version]).unwrap();
        }
        let hex = |b: u8| format!("X'{}'", format!("{b:02x}").repeat(32));
        conn.execute_batch(&DATA_5.replace("{hash}", &hex(9)).replace("{other}", &hex(8))).unwrap();
        let refused = conn.execute(
            "INSERT INTO api_tokens (name, role, token_hash, created_at) VALUES ('p', 'policy', X'00', 1)",
            [],
        );
        assert!(refused.is_err(), "version 5 refuses the policy role");
    }
    let store = sqlite::SqliteStore::open(&path).await.unwrap();
    check_upgraded_5(store).await;
    let conn = sqlite::open(&path).unwrap();
    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(integrity, "ok");
    let indexes: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'console_sessions' AND sql IS NOT NULL ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(indexes, ["console_sessions_expires", "console_sessions_last_seen"]);
    let bad = conn.execute(
        "INSERT INTO api_tokens (name, role, token_hash, created_at) VALUES ('r', 'root', X'01', 1)",
        [],
    );
    assert!(bad.is_err(), "an unknown role is still refused");
}

#[tokio::test]
async fn postgres_version_5_data_reads_back_after_the_policy_role_upgrade() {
    let (url, schema) = super::harness::pg_schema().await;
    let _schema = Schema(schema);
    {
        let (mut client, conn) =
            tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        let driver = tokio::spawn(conn);
        client
            .batch_execute(
                "CREATE TABLE schema_migrations (
                    version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
            )
            .await
            .unwrap();
        for m in &postgres::MIGRATIONS[..5] {
            let tx = client.transaction().await.unwrap();
            tx.batch_execute(m.sql).await.unwrap();
            let version = i32::try_from(m.version).unwrap();
            tx.execute("INSERT INTO schema_migrations VALUES ($1, 0)", &[&version]).await.unwrap();
            tx.commit().await.unwrap();
        }
        let hex = |b: u8| format!("'\\x{}'::bytea", format!("{b:02x}").repeat(32));
        client
            .batch_execute(&DATA_5.replace("{hash}", &hex(9)).replace("{other}", &hex(8)))
            .await
            .unwrap();
        drop(client);
        driver.await.unwrap().unwrap();
    }
    let store = postgres::PgStore::open(&url).await.unwrap();
    check_upgraded_5(store).await;
}
