//! The store: everything the collector knows, in SQLite or PostgreSQL, behind one trait.
//!
//! Design constraints:
//! - **Only this module speaks SQL.** Callers hand in and get back the nouns of
//!   [`crate::model`]; SQL is parameterised everywhere, and strings are stored as given.
//! - **No state outside the database.** Several collectors may share one PostgreSQL, so
//!   idempotence is enforced by unique constraints (a batch id is inserted into `batches` in
//!   the same transaction as its sightings; a replay finds the row and counts nothing), never
//!   by in-process maps.
//! - **Migrations are versioned and run at open, under a lock** (`BEGIN IMMEDIATE` on SQLite,
//!   a session advisory lock on PostgreSQL), so several instances can start at once. The SQL
//!   lives in `migrations/{sqlite,postgres}/NNNN_name.sql`; applied versions are recorded in
//!   `schema_migrations`. A migration, once released, is never edited: add a new one.
//! - **Append-only audit.** `audit_log` refuses UPDATE and DELETE by trigger; every review and
//!   token change, console sign-in and sign-out, and enroll secret rotation writes its audit
//!   row in the same transaction as the change.
//! - **Console sessions are stored by the hash of their cookie**, like tokens and node keys;
//!   a session signed in with a token is valid only while that token is (checked on every
//!   read, so revoking a token needs no session bookkeeping).
//! - **Imports are idempotent by key.** Expense lines and gateway spend carry a dedupe key
//!   unique per source (`INSERT ... ON CONFLICT DO NOTHING`); people are upserted by email.
//!   Money is stored as integers only (minor units, or billionths for gateway costs).
//! - **Aggregated sightings.** One row per (device, product, kind, value, user, process,
//!   window) with first seen, last seen and count; an absent user or process is `''`.
//! - **Rollups for reads, append-only for writes.** Ingest also appends a pending row per
//!   (device, product, kind, user) of the batch; [`Store::fold`] moves pending rows into the
//!   rollups that answer the inventory (see [`rollup`]). Reads that use the rollups fold first,
//!   so they always see every acknowledged batch.
//!
//! Backends: [`sqlite::SqliteStore`] (rusqlite on tokio's blocking pool, WAL, busy timeout,
//! foreign keys; its files kept 0600 in a 0700 folder by [`files`]) and [`postgres::PgStore`]
//! (tokio-postgres with a bounded deadpool pool, TLS by the URL's `sslmode` through
//! [`postgres_tls`]).

use std::future::Future;

use aiscout_wire::UnixSecs;

use crate::model::{
    Admission, Admit, AdmitRule, Attempt, AuditEntry, AuditFilter, AuditRecord, Batch, ChannelRow,
    Claimed, DeliveryRow, DescriptorMapping, Device, DeviceId, DevicePage, DeviceQuery,
    DeviceSighting, DeviceSummary, DeviceUsage, DigestClaim, EnrollAttempt, EnrollOutcome,
    ExpenseLine, GatewaySpend, GatewayTotal, Health, ImportCounts, ImportRun, IngestOutcome,
    McpServerFlags, NewEvent, OwnerUse, Person, PersonUsage, ProcessSighting, ProductUsage,
    ReenrollPolicy, ReenrollRequest, Review, ScimResource, ScimWrite, Session, SourceUsage,
    StoredEvent, Token, UsageFilter, ValueUsage,
};

pub mod erase;
use crate::identity::{Identities, PrivacyMode};
pub mod files;
pub mod outbox;
pub mod postgres;
pub mod postgres_tls;
mod queries;
pub mod retention;
pub mod rollup;
mod shared;
mod sql;
pub mod sqlite;

/// A SHA-256 hash of a credential (node key or API token).
pub type CredentialHash = [u8; 32];

/// Builds the audit record of a change from the state before it (read in the same
/// transaction).
pub type AuditFn<T> = Box<dyn FnOnce(Option<&T>) -> AuditRecord + Send>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    // The driver errors, and the other variants that wrap an error, carry their cause in the
    // message, not in `source()`: logs print only the message, and a report of the whole chain
    // names each cause once (issue 18). `Shared` is transparent, so it is shown as its cause.
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(rusqlite::Error),
    /// PostgreSQL failed.
    #[error("postgres: {}", causes(.0))]
    Postgres(tokio_postgres::Error),
    /// No connection could be had from the PostgreSQL pool.
    #[error("postgres pool: {}", causes(.0))]
    Pool(deadpool_postgres::PoolError),
    /// The PostgreSQL pool could not be built.
    #[error("postgres pool: {0}")]
    PoolBuild(deadpool_postgres::BuildError),
    /// The database did not answer within the caller's own deadline (the API's readiness
    /// probe, which must not wait for the pool's own timeout).
    #[error("no answer from the database within {} s", .waited.as_secs())]
    NoAnswer {
        /// How long the caller waited.
        waited: std::time::Duration,
    },
    /// A migration failed.
    #[error("migration {version} failed: {error}")]
    Migration {
        /// The migration version.
        version: u32,
        /// Why: the driver's error ([`StoreError::Sqlite`] or [`StoreError::Postgres`]).
        error: Box<StoreError>,
    },
    /// The database has migrations this build does not know (a newer collector ran on it).
    #[error(
        "database schema version {found} is newer than this collector's {known}: a newer \
         aiscout-collector has migrated it; run that version or a later one (docs/upgrade.md)"
    )]
    SchemaTooNew {
        /// Highest version applied in the database.
        found: u32,
        /// Highest version this build knows.
        known: u32,
    },
    /// A row already exists with this unique name.
    #[error("{what} {name:?} already exists")]
    Exists {
        /// What kind of row.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// Stored data that cannot be read back (for example an unknown role).
    #[error("corrupt row in {table}: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A stored JSON document that cannot be read back.
    #[error("corrupt row in {table}: {error}")]
    CorruptJson {
        /// The table.
        table: &'static str,
        /// Why.
        error: serde_json::Error,
    },
    /// The SQLite online backup found the database locked on every try.
    #[error("the database stayed locked through {tries} tries")]
    BackupLocked {
        /// How many steps were tried.
        tries: u32,
    },
    /// A blocking task of the store panicked or was cancelled.
    #[error("store task failed: {0}")]
    Join(tokio::task::JoinError),
    /// A value could not be encoded as a JSON statement parameter.
    #[error("{what} as JSON: {error}")]
    Json {
        /// Which value.
        what: &'static str,
        /// Why.
        error: serde_json::Error,
    },
    /// No free `HOST#N` id was left for another duplicate of `host` (64 were tried).
    #[error("no free duplicate host id for {host:?}")]
    NoFreeHostId {
        /// The host id that has duplicates.
        host: String,
    },
    /// The SQLite connection pool is closed (the store is shutting down).
    #[error("the sqlite connection pool is closed: {0}")]
    PoolClosed(tokio::sync::AcquireError),
    /// One failure of a group of callers answered together (the SQLite writer commits a
    /// group of batches, or runs one fold, for all who wait on it): each caller gets the
    /// group's error itself, shown and classified as that error.
    #[error(transparent)]
    Shared(std::sync::Arc<StoreError>),
    /// A SQLite statement run through the shared statement layer waited, which it never
    /// should (a bug: nothing on the SQLite side is asynchronous).
    #[error("a SQLite statement did not complete")]
    Unfinished,
    /// The SQLite writer thread could not be started.
    #[error("starting the store writer: {0}")]
    WriterStart(std::io::Error),
    /// The SQLite writer thread has stopped, so no batch can be written or folded.
    #[error("the store writer has stopped")]
    WriterStopped,
    /// A statement that always answers a row (a `COUNT(*)`, an upsert with `RETURNING`, a row
    /// this transaction claimed) answered none: a bug or a schema that is not ours.
    #[error("{what} answered no row")]
    NoRow {
        /// The statement, as a person would name it.
        what: &'static str,
    },
    /// The database URL is not understood.
    #[error("bad database url: {0}")]
    Url(String),
    /// A database file or folder could not be created or its permissions set.
    #[error("{path}: {error}")]
    Io {
        /// The file or folder.
        path: String,
        /// Why (in the message, not the source).
        error: std::io::Error,
    },
    /// The TLS settings of a PostgreSQL URL cannot be used (`sslmode`, `sslrootcert`).
    #[error("postgres tls: {0}")]
    Tls(postgres_tls::PgTlsError),
}

impl StoreError {
    /// Whether the database is out of reach for now (no pooled connection, a connection lost
    /// or refused, SQLite busy past its timeout) rather than the call being wrong: the API
    /// answers such failures 503 with `Retry-After`, so agents and load balancers wait and
    /// retry instead of taking a 500 for a fault of the request.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Pool(_) | StoreError::PoolBuild(_) | StoreError::NoAnswer { .. } => true,
            // No SQLSTATE: the server never answered (connect, I/O, closed connection).
            StoreError::Postgres(e) => {
                // SQLSTATE class 08 (connection exception) and 57P01..57P03 (shutting down,
                // cannot connect now); or no answer at all (closed, I/O).
                let state = e.code().map(tokio_postgres::error::SqlState::code);
                e.is_closed()
                    || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
                    || state.is_some_and(|c| {
                        c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03")
                    })
            }
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ),
            StoreError::Shared(e) => e.is_unavailable(),
            _ => false,
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e)
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Postgres(e)
    }
}

/// An error and its sources as one line, `a: b: c`, leaving out a source whose text the line
/// already holds (drivers often repeat their cause).
pub fn causes(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut next = e.source();
    // Bounded: a source chain is finite, but a cyclic one must not hang a log line.
    for _ in 0..16 {
        let Some(cause) = next else { break };
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        next = cause.source();
    }
    line
}

/// The migrations of one dialect (`$d`: `"sqlite"` or `"postgres"`), in order: both folders under
/// `migrations/` hold the same file names, listed once here (paths are relative to the
/// invoking file, one folder below this one). A new migration is a file in each
/// folder and a line here.
macro_rules! migrations {
    ($d:literal) => {
        &[
            $crate::store::Migration {
                version: 1,
                sql: include_str!(concat!("../migrations/", $d, "/0001_init.sql")),
            },
            $crate::store::Migration {
                version: 2,
                sql: include_str!(concat!("../migrations/", $d, "/0002_spend.sql")),
            },
            $crate::store::Migration {
                version: 3,
                sql: include_str!(concat!("../migrations/", $d, "/0003_rollups.sql")),
            },
            $crate::store::Migration {
                version: 4,
                sql: include_str!(concat!("../migrations/", $d, "/0004_filters.sql")),
            },
            $crate::store::Migration {
                version: 5,
                sql: include_str!(concat!("../migrations/", $d, "/0005_console.sql")),
            },
            $crate::store::Migration {
                version: 6,
                sql: include_str!(concat!("../migrations/", $d, "/0006_policy_role.sql")),
            },
            $crate::store::Migration {
                version: 7,
                sql: include_str!(concat!("../migrations/", $d, "/0007_data_versions.sql")),
            },
            $crate::store::Migration {
                version: 8,
                sql: include_str!(concat!("../migrations/", $d, "/0008_alerts.sql")),
            },
            $crate::store::Migration {
                version: 9,
                sql: include_str!(concat!("../migrations/", $d, "/0009_connectors.sql")),
            },
            $crate::store::Migration {
                version: 10,
                sql: include_str!(concat!("../migrations/", $d, "/0010_reenroll.sql")),
            },
            $crate::store::Migration {
                version: 11,
                sql: include_str!(concat!("../migrations/", $d, "/0011_digests.sql")),
            },
            $crate::store::Migration {
                version: 12,
                sql: include_str!(concat!("../migrations/", $d, "/0012_privacy.sql")),
            },
            $crate::store::Migration {
                version: 13,
                sql: include_str!(concat!("../migrations/", $d, "/0013_scim.sql")),
            },
            $crate::store::Migration {
                version: 14,
                sql: include_str!(concat!("../migrations/", $d, "/0014_alert_caps.sql")),
            },
            $crate::store::Migration {
                version: 15,
                sql: include_str!(concat!("../migrations/", $d, "/0015_connector_errors.sql")),
            },
            $crate::store::Migration {
                version: 16,
                sql: include_str!(concat!("../migrations/", $d, "/0016_pseudonyms.sql")),
            },
            $crate::store::Migration {
                version: 17,
                sql: include_str!(concat!("../migrations/", $d, "/0017_candidate_reasons.sql")),
            },
            $crate::store::Migration {
                version: 18,
                sql: include_str!(concat!("../migrations/", $d, "/0018_overlay.sql")),
            },
            $crate::store::Migration {
                version: 19,
                sql: include_str!(concat!("../migrations/", $d, "/0019_mcp_flags.sql")),
            },
            $crate::store::Migration {
                version: 20,
                sql: include_str!(concat!("../migrations/", $d, "/0020_descriptor_mappings.sql")),
            },
            $crate::store::Migration {
                version: 21,
                sql: include_str!(concat!("../migrations/", $d, "/0021_privacy_mode.sql")),
            },
        ]
    };
}
pub(crate) use migrations;

/// One versioned migration.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// Version, from 1, increasing by one.
    pub version: u32,
    /// The SQL script.
    pub sql: &'static str,
}

/// Most devices returned by a product detail query.
pub const PRODUCT_DEVICES_LIMIT: i64 = 1_000;

/// [`Store::mcp_flags`] in both dialects (`present` is an integer in SQLite and a boolean in
/// PostgreSQL; both read it as a condition). Sorted by the caller, bytewise.
pub(crate) const MCP_FLAGS_SELECT: &str =
    "SELECT product, value, flags, COUNT(DISTINCT device_id)::bigint FROM installed
     WHERE kind = 'mcp_server' AND present AND flags <> ''
     GROUP BY product, value, flags";

/// One [`MCP_FLAGS_SELECT`] row.
pub(crate) fn mcp_flags_row(
    product: String,
    value: String,
    flags: &str,
    devices: i64,
) -> McpServerFlags {
    McpServerFlags {
        product,
        value,
        flags: flags.split(',').filter(|f| !f.is_empty()).map(str::to_owned).collect(),
        devices,
    }
}

/// Most rows one [`Store::product_values`] returns (a larger limit is clamped to this).
pub const PRODUCT_VALUES_LIMIT: i64 = 1_000;

/// Counters of the families of data that the console's and the API's derived views are
/// computed from (migration 0007): a change to a family bumps its counter in the same
/// transaction, so an unchanged counter means an unchanged family (see `join::cache`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Versions {
    /// Expense lines, gateway spend and the people directory.
    pub spend: i64,
    /// Enrolments (a device's owner and host name).
    pub devices: i64,
    /// The rollups: every fold that moves pending rows or rebuilds departments.
    pub usage: i64,
}

/// Bumps [`Versions::spend`]; run in the transaction of the change (same SQL on both).
pub(crate) const BUMP_SPEND: &str =
    "UPDATE data_versions SET version = version + 1 WHERE name = 'spend'";
/// Bumps [`Versions::devices`].
pub(crate) const BUMP_DEVICES: &str =
    "UPDATE data_versions SET version = version + 1 WHERE name = 'devices'";
/// Bumps [`Versions::usage`].
pub(crate) const BUMP_USAGE: &str =
    "UPDATE data_versions SET version = version + 1 WHERE name = 'usage'";
/// The device list's last heartbeat: the heartbeat's time, else the last contact.
pub(crate) const DEVICE_LAST_HEARTBEAT: &str = "COALESCE(h.received_at, d.last_contact)";

/// Reads every counter.
pub(crate) const VERSIONS_SELECT: &str = "SELECT name, version FROM data_versions";

impl Versions {
    /// Sets the counter called `name` (unknown names are ignored: a newer migration's).
    pub(crate) fn set(&mut self, name: &str, version: i64) {
        match name {
            "spend" => self.spend = version,
            "devices" => self.devices = version,
            "usage" => self.usage = version,
            _ => {}
        }
    }
}

/// Where a store keeps the collector's identity key once [`Store::protect_identities`] gave it.
pub(crate) type IdentitySlot = std::sync::Arc<std::sync::OnceLock<std::sync::Arc<Identities>>>;
/// The erased identities' keyed hashes and tombstones (issue 21).
pub(crate) const ERASED_SQL: &str = "SELECT hash, tombstone FROM erased_identities";
/// Remembers an erased identity (`?1` its keyed hash, `?2` its tombstone).
pub(crate) const REMEMBER_ERASED_SQL: &str =
    "INSERT INTO erased_identities (hash, tombstone) VALUES (?1, ?2) ON CONFLICT (hash) DO NOTHING";
/// A device's stored owner (`?1` its id).
pub(crate) const DEVICE_OWNER_SQL: &str = "SELECT owner_email FROM devices WHERE id = ?1";
/// Keeps a pseudonym's sealed identity (`?1` the pseudonym, `?2` the sealed bytes).
pub(crate) const SEAL_SQL: &str =
    "INSERT INTO pseudonyms (pseudonym, sealed) VALUES (?1, ?2) ON CONFLICT (pseudonym) DO NOTHING";
/// A pseudonym's sealed identity (`?1`).
pub(crate) const SEALED_SQL: &str = "SELECT sealed FROM pseudonyms WHERE pseudonym = ?1";
/// Forgets a pseudonym's sealed identity (`?1`): an erasure.
pub(crate) const FORGET_SQL: &str = "DELETE FROM pseudonyms WHERE pseudonym = ?1";

/// A SCIM resource as read: a document sealed in pseudonymous mode
/// ([`Identities::seal_text`]) opened again, so the protocol code sees it as written.
///
/// # Errors
/// [`StoreError::Corrupt`] when it is sealed and cannot be opened with the key given.
pub(crate) fn open_scim(
    ids: Option<&Identities>,
    mut r: ScimResource,
) -> Result<ScimResource, StoreError> {
    if r.resource.starts_with(crate::identity::SEALED_TEXT_PREFIX) {
        r.resource =
            ids.and_then(|ids| ids.open_text(&r.resource)).ok_or_else(|| StoreError::Corrupt {
                table: "scim_resources",
                reason: format!(
                    "{} {} is sealed and the identity key does not open it",
                    r.kind, r.id
                ),
            })?;
    }
    Ok(r)
}

/// A SCIM filter's name as stored ([`Identities::scim_name`]).
pub(crate) fn scim_name(ids: Option<&Identities>, name: Option<String>) -> Option<String> {
    match (ids, name) {
        (Some(ids), Some(name)) => Some(ids.scim_name(&name)),
        (_, name) => name,
    }
}

/// The plain identity behind a stored one: opened from its sealed identity when it has one
/// (`sealed`, read with [`SEALED_SQL`]), as stored in plain mode, unknown otherwise.
pub(crate) fn plain_of(ids: &Identities, stored: &str, sealed: Option<Vec<u8>>) -> Option<String> {
    match sealed {
        Some(sealed) => ids.open(&sealed),
        None if ids.pseudonymous() => None,
        None => Some(stored.to_owned()),
    }
}

/// What an erasure remembers and forgets besides rewriting rows: the keyed hashes of the
/// plain email and name with their tombstones, and of each OS user name of the person's
/// devices (`users`, plain, in the order they were renamed; keyed with the tombstone email,
/// [`crate::identity::os_user_key`]) with the name it became.
pub(crate) fn erased_identities(
    ids: &Identities,
    email: &str,
    name: Option<&str>,
    users: &[Option<String>],
    t: &erase::Tombstone,
) -> Vec<(String, String)> {
    let mut out = vec![(ids.erased_hash(email), t.email.clone())];
    if let Some(name) = name.filter(|n| !n.trim().is_empty()) {
        out.push((ids.erased_hash(name), t.name.clone()));
    }
    for (n, user) in users.iter().enumerate() {
        if let Some(user) = user {
            let key = crate::identity::os_user_key(&t.email, user);
            out.push((ids.erased_hash(&key), t.os_user_name(n)));
        }
    }
    out
}

/// The columns of a [`DescriptorMapping`], in its field order.
pub(crate) const MAPPING_COLUMNS: &str = "id, descriptor, product, actor, created_at, note";

/// The ids of the candidate lines (`(id, raw descriptor)`, as read in the transaction) whose
/// normalised descriptor is `key`: what a new mapping resolves. Normalising is Rust's (the
/// catalog's merchant tokens), so the store reads the unresolved candidates and picks them.
pub(crate) fn lines_for_key(candidates: Vec<(i64, String)>, key: &str) -> Vec<i64> {
    candidates
        .into_iter()
        .filter(|(_, d)| crate::model::descriptor_key(d) == key)
        .map(|(id, _)| id)
        .collect()
}

/// For each line of an import chunk, the mapping that resolves it (issue 17): a candidate
/// with no product whose normalised descriptor is mapped. Applied by the store inside the
/// chunk's transaction, so a mapping added while a file imports covers every line of it.
pub(crate) fn resolve_mapped(
    lines: &mut [ExpenseLine],
    mappings: &std::collections::HashMap<String, (i64, String)>,
) -> Vec<Option<i64>> {
    lines
        .iter_mut()
        .map(|l| {
            if mappings.is_empty() || l.product.is_some() || !l.candidate {
                return None;
            }
            let (id, product) = mappings.get(&crate::model::descriptor_key(&l.descriptor))?;
            l.product = Some(product.clone());
            l.candidate = false;
            Some(*id)
        })
        .collect()
}

/// The privacy mode a database recorded (issue 21), both dialects.
pub(crate) const RECORDED_PRIVACY_MODE: &str = "SELECT mode FROM privacy_mode WHERE id = 1";
/// Records the privacy mode once (`$1` the mode, `$2` the time), both dialects.
pub(crate) const RECORD_PRIVACY_MODE: &str = "INSERT INTO privacy_mode (id, mode, recorded_at)
     VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING";

/// Where a plain identity (not empty, not a pseudonym, not an erasure's tombstone) is stored,
/// as `table.column`, or no row: how a database from before `privacy_mode` shows which mode it
/// kept people in. Stops at the first hit; both dialects.
pub(crate) const PLAIN_IDENTITY: &str = "
    SELECT 'devices.owner_email' FROM devices WHERE {owner_email}
    UNION ALL SELECT 'people.email' FROM people WHERE {email}
    UNION ALL SELECT 'expense_lines.payer_email' FROM expense_lines WHERE {payer_email}
    UNION ALL SELECT 'gateway_spend.end_user' FROM gateway_spend WHERE {end_user}
    UNION ALL SELECT 'sightings.os_user' FROM sightings WHERE {os_user}
    LIMIT 1";
/// Whether any pseudonym was made in this database, both dialects.
pub(crate) const ANY_PSEUDONYM: &str = "SELECT 1 FROM pseudonyms LIMIT 1";

/// [`PLAIN_IDENTITY`] with each column's test written out.
pub(crate) fn plain_identity_sql() -> String {
    let plain = |c: &str| {
        format!(
            "COALESCE({c}, '') <> '' AND {c} NOT LIKE '{}%' AND {c} NOT LIKE 'erased-%' \
             AND {c} NOT LIKE 'Erased person %'",
            crate::identity::PREFIX
        )
    };
    ["owner_email", "email", "payer_email", "end_user", "os_user"]
        .iter()
        .fold(PLAIN_IDENTITY.to_owned(), |sql, c| sql.replace(&format!("{{{c}}}"), &plain(c)))
}

/// The mode a database keeps people in, from what [`Store::privacy_mode`] read: the recorded
/// one, else a plain identity found (`plain`), else a pseudonym (`pseudonymous`), else (no
/// people yet) the mode it is opened with.
pub(crate) fn privacy_mode_of(
    recorded: Option<String>,
    plain_found: bool,
    pseudonym_found: bool,
    opened_with: PrivacyMode,
) -> Result<PrivacyMode, StoreError> {
    match recorded {
        Some(m) => PrivacyMode::parse(&m)
            .map_err(|reason| StoreError::Corrupt { table: "privacy_mode", reason }),
        None if plain_found => Ok(PrivacyMode::Plain),
        None if pseudonym_found => Ok(PrivacyMode::Pseudonymous),
        None => Ok(opened_with),
    }
}

/// Most identities [`Store::product_people`] answers.
pub const PRODUCT_PEOPLE_LIMIT: i64 = 1_000;
/// [`Store::product_people`], in both dialects (`$n` placeholders).
pub(crate) const PRODUCT_PEOPLE: &str =
    "SELECT payer_email FROM expense_lines WHERE product = $1 AND payer_email <> ''
     UNION SELECT payer_name FROM expense_lines WHERE product = $1 AND payer_name <> ''
     UNION SELECT end_user FROM gateway_spend WHERE product = $1 AND end_user <> ''
     ORDER BY 1 LIMIT $2";

/// Most rows of [`Store::process_sightings`].
pub const PROCESS_SIGHTINGS_LIMIT: i64 = 10_000;

/// [`Store::overlay`], in both dialects.
pub(crate) const OVERLAY_LATEST: &str =
    "SELECT version, document FROM org_overlay ORDER BY version DESC LIMIT 1";
/// [`Store::overlay_version`], in both dialects (the primary key's index answers it).
pub(crate) const OVERLAY_VERSION: &str = "SELECT MAX(version) FROM org_overlay";
/// [`Store::put_overlay`]'s insert, in both dialects (`$n` placeholders).
pub(crate) const OVERLAY_INSERT: &str =
    "INSERT INTO org_overlay (version, document, actor, created_at)
     VALUES ($1, $2, $3, $4) ON CONFLICT (version) DO NOTHING";
/// [`Store::process_sightings`], in both dialects (`$n` placeholders).
pub(crate) const PROCESS_SIGHTINGS: &str =
    "SELECT d.host_id, d.hostname, d.owner_email, s.product, s.kind, s.value, s.process,
            MIN(s.first_seen) AS first_seen, MAX(s.last_seen) AS last_seen, SUM(s.count) AS count
     FROM sightings s JOIN devices d ON d.id = s.device_id
     WHERE s.product = $1 AND s.kind IN ('dns', 'tls_sni', 'quic_sni')
     GROUP BY d.id, d.host_id, d.hostname, d.owner_email, s.product, s.kind, s.value, s.process
     ORDER BY d.host_id, s.value, s.process, s.kind
     LIMIT $2";

/// Everything the collector stores. Both backends pass the same conformance suite
/// (`tests/it/store/`).
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`, for logs and metrics.
    fn backend(&self) -> &'static str;

    /// Checks that the database answers (readiness).
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Gives the store the collector's identity key (issue 21): from then on every write of
    /// an email, user or name stores an erased one under its tombstone and, in pseudonymous
    /// mode, the rest as pseudonyms with the identity sealed. Set once; later calls are
    /// ignored.
    fn protect_identities(&self, ids: std::sync::Arc<Identities>);

    /// The privacy mode this database keeps people in (issue 21): the recorded one; when none
    /// is recorded yet, read off what the database holds (see `privacy_mode_of`) and recorded
    /// once it holds people, so every later start compares with the same answer. A database
    /// without people takes `opened_with`, the configured mode, and records nothing (a first
    /// `report` without the config must not fix the mode of a new install).
    fn privacy_mode(
        &self,
        opened_with: PrivacyMode,
        now: i64,
    ) -> impl Future<Output = Result<PrivacyMode, StoreError>> + Send;

    /// The identity key given by [`Store::protect_identities`].
    fn identities(&self) -> Option<std::sync::Arc<Identities>>;

    /// A pseudonym's sealed identity, appending `audit` in the same transaction when there
    /// is one (a reveal is audited or does not happen).
    fn reveal_sealed(
        &self,
        pseudonym: String,
        audit: AuditRecord,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;

    /// Records an enrollment: creates or updates the device by host id, drops its previous
    /// node keys and stores the hash of the new one.
    fn enroll(
        &self,
        device: Device,
        key_hash: CredentialHash,
        now: i64,
    ) -> impl Future<Output = Result<DeviceId, StoreError>> + Send;

    /// The device a node key belongs to.
    fn device_by_key(
        &self,
        key_hash: CredentialHash,
    ) -> impl Future<Output = Result<Option<DeviceId>, StoreError>> + Send;

    /// Stores a batch in one transaction with its batch id, unless that id was stored before.
    fn ingest(
        &self,
        device: DeviceId,
        batch: Batch,
        now: i64,
    ) -> impl Future<Output = Result<IngestOutcome, StoreError>> + Send;

    /// Folds pending usage into the rollups (see [`rollup`]); returns how many pending rows
    /// were folded. Safe to call at any time, from any number of instances.
    fn fold(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The background fold of `serve`: like [`Store::fold`], but a backend may put it off while
    /// batches are arriving, so that acknowledgements come first (reads still fold first).
    fn fold_when_idle(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        self.fold()
    }

    /// Replaces the device's last heartbeat.
    fn heartbeat(
        &self,
        device: DeviceId,
        health: Health,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every device, sorted by host id, with its last heartbeat.
    fn devices(&self) -> impl Future<Output = Result<Vec<DeviceSummary>, StoreError>> + Send;

    /// Usage per (product, source) and per product, filtered.
    fn usage(
        &self,
        filter: UsageFilter,
    ) -> impl Future<Output = Result<(Vec<SourceUsage>, Vec<ProductUsage>), StoreError>> + Send;

    /// The payers (emails and names) of a product's expense lines and the end users of its
    /// gateway rows, as stored (pseudonyms in pseudonymous mode), distinct and sorted, at
    /// most [`PRODUCT_PEOPLE_LIMIT`]: whom a reveal for the product may name.
    fn product_people(
        &self,
        product: String,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Devices that saw a product (at most [`PRODUCT_DEVICES_LIMIT`]), sorted by host id.
    fn product_devices(
        &self,
        product: String,
    ) -> impl Future<Output = Result<Vec<DeviceUsage>, StoreError>> + Send;

    /// One page of devices for the console's list, with the counts it shows; see
    /// [`DeviceQuery`].
    fn devices_page(
        &self,
        query: DeviceQuery,
    ) -> impl Future<Output = Result<DevicePage, StoreError>> + Send;

    /// The data versions, read after folding the pending sightings, so that they cover every
    /// batch acknowledged before the call.
    fn versions(&self) -> impl Future<Output = Result<Versions, StoreError>> + Send;

    /// What matched a product, per indicator kind and value: distinct devices, summed count,
    /// first and last seen; ordered by kind, then value (bytewise). At most `limit` rows
    /// (clamped to 1..=[`PRODUCT_VALUES_LIMIT`]).
    fn product_values(
        &self,
        product: String,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<ValueUsage>, StoreError>> + Send;

    /// The configured MCP servers installed now that carry risk flags (issue 17), one row per
    /// (client product, server value, flags) with the devices reporting it, sorted by product,
    /// value and flags (bytewise).
    fn mcp_flags(&self) -> impl Future<Output = Result<Vec<McpServerFlags>, StoreError>> + Send;

    /// Every current review decision.
    fn reviews(&self) -> impl Future<Output = Result<Vec<Review>, StoreError>> + Send;

    /// The current review of one product.
    fn review(
        &self,
        product: String,
    ) -> impl Future<Output = Result<Option<Review>, StoreError>> + Send;

    /// Sets a review and appends its audit record, in one transaction; returns the review
    /// it replaced.
    fn set_review(
        &self,
        review: Review,
        audit: AuditFn<Review>,
    ) -> impl Future<Output = Result<Option<Review>, StoreError>> + Send;

    /// Creates an API token (stored as its hash) and appends its audit record.
    ///
    /// Fails with [`StoreError::Exists`] when the name is taken.
    fn create_token(
        &self,
        token: Token,
        hash: CredentialHash,
        audit: AuditRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Revokes the named token (if it exists and is not revoked) and appends its audit
    /// record; returns the token as it was before, or `None` when there was nothing to revoke.
    fn revoke_token(
        &self,
        name: String,
        now: i64,
        audit: AuditFn<Token>,
    ) -> impl Future<Output = Result<Option<Token>, StoreError>> + Send;

    /// Every API token, sorted by name.
    fn tokens(&self) -> impl Future<Output = Result<Vec<Token>, StoreError>> + Send;

    /// The token with this hash, revoked or not.
    fn token_by_hash(
        &self,
        hash: CredentialHash,
    ) -> impl Future<Output = Result<Option<Token>, StoreError>> + Send;

    /// Inserts expense lines in one transaction; a line whose (source, dedupe key) is already
    /// stored is counted as a duplicate and left as it was.
    fn add_expenses(
        &self,
        lines: Vec<ExpenseLine>,
        now: i64,
    ) -> impl Future<Output = Result<ImportCounts, StoreError>> + Send;

    /// Stored expense lines (matched and candidates) that occurred at or after `since`,
    /// ordered by time, then id.
    fn expenses(
        &self,
        since: Option<i64>,
    ) -> impl Future<Output = Result<Vec<ExpenseLine>, StoreError>> + Send;

    /// Every descriptor mapping (issue 17), sorted by descriptor.
    fn mappings(&self) -> impl Future<Output = Result<Vec<DescriptorMapping>, StoreError>> + Send;

    /// Stores a descriptor mapping and, in the same transaction, resolves every stored
    /// candidate line with that normalised descriptor to its product and appends `audit`.
    /// Returns the stored mapping (with its id) and how many lines it resolved. A descriptor
    /// mapped already is [`StoreError::Exists`]. From then on [`Store::add_expenses`]
    /// resolves such candidate lines as it stores them.
    fn add_mapping(
        &self,
        mapping: DescriptorMapping,
        audit: AuditRecord,
    ) -> impl Future<Output = Result<(DescriptorMapping, u64), StoreError>> + Send;

    /// Removes mapping `id` and turns the lines it resolved back into candidates, with the
    /// audit record `audit` builds from the removed mapping, in one transaction. `None` when
    /// there is no such mapping (nothing is written).
    fn remove_mapping(
        &self,
        id: i64,
        audit: AuditFn<DescriptorMapping>,
    ) -> impl Future<Output = Result<Option<(DescriptorMapping, u64)>, StoreError>> + Send;

    /// Inserts gateway spend rows in one transaction, idempotently like [`Store::add_expenses`].
    fn add_gateway_spend(
        &self,
        rows: Vec<GatewaySpend>,
        now: i64,
    ) -> impl Future<Output = Result<ImportCounts, StoreError>> + Send;

    /// Gateway spend at or after `since`, summed per product, provider, department (the end
    /// user's in the people directory, matched by lowercased email, else the gateway's team),
    /// currency and UTC day; ordered by day, then product (none first), provider, department
    /// and currency.
    fn gateway_totals(
        &self,
        since: Option<i64>,
    ) -> impl Future<Output = Result<Vec<GatewayTotal>, StoreError>> + Send;

    /// Inserts or updates people by email in one transaction; an unchanged person counts as
    /// a duplicate.
    fn upsert_people(
        &self,
        people: Vec<Person>,
    ) -> impl Future<Output = Result<ImportCounts, StoreError>> + Send;

    /// Every person, sorted by email.
    fn people(&self) -> impl Future<Output = Result<Vec<Person>, StoreError>> + Send;

    /// Whether each person is an active seat (false once deprovisioned over SCIM), by email.
    fn people_active(&self)
    -> impl Future<Output = Result<Vec<(String, bool)>, StoreError>> + Send;

    /// One SCIM resource (`kind` is `User` or `Group`).
    fn scim_get(
        &self,
        kind: &'static str,
        id: String,
    ) -> impl Future<Output = Result<Option<ScimResource>, StoreError>> + Send;

    /// SCIM resources of `kind`, oldest first, optionally only the one with this lowercased
    /// name; `offset` and `limit` page them. Returns the total before paging, and the page.
    fn scim_list(
        &self,
        kind: &'static str,
        name: Option<String>,
        offset: i64,
        limit: i64,
    ) -> impl Future<Output = Result<(i64, Vec<ScimResource>), StoreError>> + Send;

    /// Creates (`version` 1) or replaces a SCIM resource and, for a user, upserts their
    /// directory entry and active flag, in one transaction. A replacement whose stored version
    /// is not `version - 1` changes nothing and answers false (a concurrent write or a
    /// deleted resource). A name already taken is [`StoreError::Exists`].
    fn scim_write(&self, write: ScimWrite)
    -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes a SCIM resource; a user's directory entry (by `email`) stays, marked inactive;
    /// `audit` is appended in the same transaction. False when there was no such resource.
    fn scim_delete(
        &self,
        kind: &'static str,
        id: String,
        email: Option<String>,
        audit: AuditRecord,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Per device owner and product among `products`, the last time any of the owner's
    /// devices saw it; ordered by owner, then product. (The reconciliation asks only about
    /// sanctioned products: all of them would be a row per owner and product in use.)
    fn owner_last_use(
        &self,
        products: Vec<String>,
    ) -> impl Future<Output = Result<Vec<OwnerUse>, StoreError>> + Send;

    /// Sightings summed per device, product, kind and value, last seen at or after `since`;
    /// ordered by host id, product, kind, value.
    fn device_sightings(
        &self,
        since: Option<i64>,
    ) -> impl Future<Output = Result<Vec<DeviceSighting>, StoreError>> + Send;

    /// The organisation overlay in use: its highest version and canonical document.
    fn overlay(&self) -> impl Future<Output = Result<Option<(i64, String)>, StoreError>> + Send;

    /// The highest overlay version stored, without its document: the cheap check a cached
    /// overlay is compared with (issue 17), so a change that any collector on the same
    /// database committed is seen at the next use.
    fn overlay_version(&self) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;

    /// Stores overlay `version` with its audit entry in one transaction; `false` (nothing
    /// written) when that version exists already, so two admins cannot both write one.
    fn put_overlay(
        &self,
        version: i64,
        document: String,
        audit: AuditRecord,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Network sightings (`dns`, `tls_sni`, `quic_sni`) of `product`, summed per device,
    /// value and process; ordered by host id, value, process. At most
    /// [`PROCESS_SIGHTINGS_LIMIT`] rows.
    fn process_sightings(
        &self,
        product: String,
    ) -> impl Future<Output = Result<Vec<ProcessSighting>, StoreError>> + Send;

    /// Audit entries with id greater than `after`, oldest first, at most `limit`.
    fn audit(
        &self,
        after: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<AuditEntry>, StoreError>> + Send;

    /// Starts a console session (stored by the hash of its cookie value) and appends its
    /// audit record (`session.login`), in one transaction.
    fn create_session(
        &self,
        hash: CredentialHash,
        session: Session,
        audit: AuditRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The session with this hash, unless its absolute expiry is at or before `now` or the
    /// token it signed in with is revoked or gone.
    fn session(
        &self,
        hash: CredentialHash,
        now: i64,
    ) -> impl Future<Output = Result<Option<Session>, StoreError>> + Send;

    /// Records a request of the session at `now` (idle expiry counts from the last one).
    fn touch_session(
        &self,
        hash: CredentialHash,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Ends a session and appends `audit` (`session.logout`) when given, in one transaction;
    /// returns whether there was a session to end (no audit record is written otherwise).
    fn end_session(
        &self,
        hash: CredentialHash,
        audit: Option<AuditRecord>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes sessions whose absolute expiry is at or before `now` or whose last request was
    /// before `idle_before`; returns how many.
    fn purge_sessions(
        &self,
        now: i64,
        idle_before: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Audit entries matching `filter`, newest first (highest id first).
    fn audit_query(
        &self,
        filter: AuditFilter,
    ) -> impl Future<Output = Result<Vec<AuditEntry>, StoreError>> + Send;

    /// The cursor of the pull connector called `name` (Unix seconds up to which it has pulled
    /// everything), `None` before its first successful run.
    fn connector_cursor(
        &self,
        name: String,
    ) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;

    /// Moves the cursor of connector `name` to `cursor_at`, never backwards: a smaller value
    /// than the stored one leaves it as it was (another instance got further).
    fn set_connector_cursor(
        &self,
        name: String,
        cursor_at: i64,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Appends one import to the history.
    fn record_import(&self, run: ImportRun) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The last `limit` imports, newest first.
    fn import_runs(
        &self,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<ImportRun>, StoreError>> + Send;

    /// One device by host id, with its last heartbeat.
    fn device(
        &self,
        host_id: String,
    ) -> impl Future<Output = Result<Option<DeviceSummary>, StoreError>> + Send;

    /// One device's sightings summed per product, kind and value; ordered by product, kind,
    /// value.
    fn device_products(
        &self,
        host_id: String,
    ) -> impl Future<Output = Result<Vec<DeviceSighting>, StoreError>> + Send;

    /// Per person (lowercased email): products seen on devices they own, expense spend they
    /// paid, gateway spend with them as end user; every person with any of it (or only
    /// `email`), sorted by email.
    fn person_usage(
        &self,
        email: Option<String>,
    ) -> impl Future<Output = Result<Vec<PersonUsage>, StoreError>> + Send;

    /// Replaces the enroll secret (stored as its hash) and appends its audit record
    /// (`enroll_secret.rotate`), in one transaction. From then on only this secret enrolls.
    fn rotate_enroll_secret(
        &self,
        hash: CredentialHash,
        now: i64,
        audit: AuditRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The hash of the enroll secret set by the last rotation, and when; `None` before the
    /// first rotation (then the configured secret enrolls).
    fn enroll_secret(
        &self,
    ) -> impl Future<Output = Result<Option<(CredentialHash, i64)>, StoreError>> + Send;

    /// Makes `channels` the active alert channels (others stay, inactive, with their
    /// deliveries): events written from now on are fanned out to them.
    fn sync_channels(
        &self,
        channels: Vec<ChannelRow>,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Writes alert events that no change of the store causes (the periodic rules, a test
    /// event), each once by id, with their deliveries and `audit` in the same transaction;
    /// says how many were new.
    fn emit(
        &self,
        events: Vec<NewEvent>,
        audit: Option<AuditRecord>,
        now: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Claims up to `limit` deliveries of `channel` that are due at `now` for `claimer` until
    /// `lease_until`; another collector cannot claim them before the lease runs out.
    fn claim_deliveries(
        &self,
        channel: String,
        claimer: String,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<Claimed>, StoreError>> + Send;

    /// Records how an attempt ended (only while `claimer` still holds it; says whether it
    /// did), with `audit` appended in the same transaction (a delivery given up).
    fn finish_delivery(
        &self,
        claimed: Claimed,
        claimer: String,
        attempt: Attempt,
        audit: Option<AuditRecord>,
        now: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Admits claimed deliveries of one channel, in order, under its cap and quiet period
    /// (see `outbox::ADMITTED`), answering for each: a channel's admissions are serialised,
    /// so concurrent rounds and several collectors never pass `max_per_day` in a calendar day
    /// (UTC).
    fn admit_deliveries(
        &self,
        claimed: Vec<Claimed>,
        claimer: String,
        now: i64,
        rule: AdmitRule,
    ) -> impl Future<Output = Result<Vec<Admit>, StoreError>> + Send;

    /// The latest `limit` deliveries, newest event first.
    fn deliveries(
        &self,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<DeliveryRow>, StoreError>> + Send;

    /// Deliveries per (channel, state).
    fn delivery_counts(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, String, i64)>, StoreError>> + Send;

    /// The issue a ticketing channel opened for `subject`, if any.
    fn ticket(
        &self,
        channel: String,
        subject: String,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Records the issue a ticketing channel opened for `subject` (a first one stays).
    fn set_ticket(
        &self,
        channel: String,
        subject: String,
        issue_key: String,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Events of `channel` whose delivery is in `state` and was done (held, capped,
    /// delivered) in [`from`, `to`): what a digest of that period lists.
    fn channel_events(
        &self,
        channel: String,
        state: String,
        from: i64,
        to: i64,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, StoreError>> + Send;

    /// Claims the digest of `channel` for the period ending at `period_end` for `claimer`
    /// until `lease_until` (unless it was sent, or another claimer's lease runs past `now`).
    /// `Some` when the claim is held: the end of the latest digest sent before, if any, where
    /// this one's events start, and how many sends of it were refused.
    fn claim_digest(
        &self,
        channel: String,
        period_end: i64,
        claimer: String,
        now: i64,
        lease_until: i64,
    ) -> impl Future<Output = Result<Option<DigestClaim>, StoreError>> + Send;

    /// Records a refused send of a claimed digest and releases it until `retry_at`.
    fn digest_failed(
        &self,
        channel: String,
        period_end: i64,
        claimer: String,
        retry_at: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Marks a claimed digest sent with `events` listed; says whether the claim was still held.
    fn digest_sent(
        &self,
        channel: String,
        period_end: i64,
        claimer: String,
        now: i64,
        events: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// An enrollment under a re-enrollment policy (issue 14 item 3), in one transaction
    /// serialised per host id: a new host id enrolls; a known one enrolls when the attempt
    /// proves a current node key of the host id or of one of its duplicates (then as that
    /// device) or an admin approved it (the approval is used up), and otherwise as
    /// [`EnrollAttempt::policy`] says ([`reenroll_step`]); `separate` enrolls it as the next
    /// duplicate, `HOST#N` with `duplicate_of` set. Every re-enrollment, duplicate and every
    /// refused or held attempt writes its audit record in the same transaction.
    fn enroll_checked(
        &self,
        attempt: EnrollAttempt,
    ) -> impl Future<Output = Result<EnrollOutcome, StoreError>> + Send;

    /// Lets the next enrollment of `host_id` in (the admin override of `require_key` and
    /// `hold`), with its audit record `device.reenroll_approve`.
    fn approve_reenroll(
        &self,
        host_id: String,
        actor: String,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Re-enrollments waiting for an admin or approved and not yet used, by host id.
    fn reenroll_requests(
        &self,
    ) -> impl Future<Output = Result<Vec<ReenrollRequest>, StoreError>> + Send;

    /// Replaces the person with `email` (lowercased) by a tombstone everywhere, in one
    /// transaction, with one audit record (`person.erase`, the reason, no email) when anything
    /// named them ([`erase`]).
    fn erase_person(
        &self,
        email: String,
        actor: String,
        reason: String,
        now: i64,
    ) -> impl Future<Output = Result<erase::Erasure, StoreError>> + Send;

    /// Deletes (or with `dry_run` counts) what is older than the retention periods, in chunks
    /// ([`retention`]).
    fn apply_retention(
        &self,
        cutoffs: retention::Cutoffs,
        dry_run: bool,
    ) -> impl Future<Output = Result<retention::Outcome, StoreError>> + Send;
}

/// What to do with an enrollment: the one decision both backends make, from what they read in
/// the enrollment's transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReenrollStep {
    /// Enroll; the host's other keys are revoked.
    Admit(Admission),
    /// Refuse (401 is not right: the secret was; the API answers 403).
    Refuse,
    /// Queue for an admin.
    Hold,
}

/// Decides an enrollment: `known` when the host id is enrolled, `proved` when the attempt
/// presented one of its current node keys, `approved` when an admin approved it.
pub fn reenroll_step(
    policy: ReenrollPolicy,
    known: bool,
    proved: bool,
    approved: bool,
) -> ReenrollStep {
    if !known {
        ReenrollStep::Admit(Admission::New)
    } else if proved {
        ReenrollStep::Admit(Admission::NodeKey)
    } else if approved {
        ReenrollStep::Admit(Admission::Approved)
    } else {
        match policy {
            ReenrollPolicy::Replace => ReenrollStep::Admit(Admission::Replaced),
            ReenrollPolicy::RequireKey => ReenrollStep::Refuse,
            ReenrollPolicy::Hold => ReenrollStep::Hold,
            ReenrollPolicy::Separate => ReenrollStep::Admit(Admission::Duplicate),
        }
    }
}

/// The alert of an enrollment step that is a takeover attempt (issue 14): a known host id
/// enrolling without its node key, whatever the policy did with it (refused, held, replaced,
/// kept apart as a clone); none for a new host, a proved key or an admin's approval.
pub(crate) fn takeover_event(a: &EnrollAttempt, step: ReenrollStep) -> Option<NewEvent> {
    use crate::model::Admission;
    let outcome = match step {
        ReenrollStep::Admit(Admission::New | Admission::NodeKey | Admission::Approved) => {
            return None;
        }
        ReenrollStep::Admit(Admission::Replaced) => "replaced",
        ReenrollStep::Admit(Admission::Duplicate) => "duplicate",
        ReenrollStep::Refuse => "refused",
        ReenrollStep::Hold => "held",
    };
    Some(crate::alerts::event::device_takeover(
        &a.device.host_id,
        &a.device.hostname,
        outcome,
        &a.source,
        a.policy.as_str(),
        a.now.get(),
    ))
}

/// The audit record of an enrollment step: none for a new host id; `device.reenroll` for a
/// re-enrollment (with how it was let in), `device.takeover_refused` and
/// `device.reenroll_held` for the others. The actor is `enroll@<source address>`; the record
/// names the host, never a key.
pub(crate) fn reenroll_audit(
    a: &EnrollAttempt,
    step: ReenrollStep,
    duplicate: Option<&str>,
) -> Option<AuditRecord> {
    let action = match step {
        ReenrollStep::Admit(Admission::New) => return None,
        ReenrollStep::Admit(Admission::Duplicate) => "device.duplicate_host_id",
        ReenrollStep::Admit(_) => "device.reenroll",
        ReenrollStep::Refuse => "device.takeover_refused",
        ReenrollStep::Hold => "device.reenroll_held",
    };
    let mut after = serde_json::json!({
        "hostname": a.device.hostname,
        "os": a.device.os,
        "policy": a.policy.as_str(),
        "presented_previous_key": a.previous_key.is_some(),
        "source": a.source,
    });
    if let ReenrollStep::Admit(how) = step {
        after["admitted_by"] = serde_json::Value::from(how.as_str());
    }
    if let Some(own) = duplicate {
        after["enrolled_as"] = serde_json::Value::from(own);
    }
    Some(AuditRecord {
        at: a.now,
        actor: format!("enroll@{}", a.source),
        action: action.to_owned(),
        subject: a.device.host_id.clone(),
        before: None,
        after: Some(after.to_string()),
    })
}

/// The host id of the `n`th machine sharing `host_id` (the first is `HOST#2`).
pub(crate) fn duplicate_host_id(host_id: &str, existing_duplicates: i64) -> String {
    format!("{host_id}#{}", existing_duplicates.saturating_add(2))
}

/// The audit record of an admin's approval.
pub(crate) fn approve_audit(host_id: &str, actor: &str, now: i64) -> AuditRecord {
    AuditRecord {
        at: UnixSecs(now),
        actor: actor.to_owned(),
        action: "device.reenroll_approve".to_owned(),
        subject: host_id.to_owned(),
        before: None,
        after: None,
    }
}

/// Most entries one [`Store::audit_query`] returns (a larger limit is clamped to this).
pub const AUDIT_QUERY_LIMIT: i64 = 1_000;

/// The statement of [`Store::audit_query`], with `mark` before each parameter number (`$` for
/// PostgreSQL, `?` for SQLite), and its parameters. Only the filters that are set become
/// conditions, so each combination is a statement of its own that can use the audit log's
/// indexes (a `? IS NULL OR` form would scan).
fn audit_query_sql(filter: &AuditFilter, mark: char) -> (String, Vec<rollup::Arg>) {
    let mut conditions = Vec::new();
    let mut args = Vec::new();
    let mut add = |condition: &str, arg: rollup::Arg| {
        args.push(arg);
        conditions.push(format!("{condition} {mark}{}", args.len()));
    };
    if let Some(actor) = &filter.actor {
        add("actor =", rollup::Arg::Text(Some(actor.clone())));
    }
    if let Some(subject) = &filter.subject {
        add("subject =", rollup::Arg::Text(Some(subject.clone())));
    }
    if let Some(since) = filter.since {
        add("at >=", rollup::Arg::Int(since.get()));
    }
    if let Some(until) = filter.until {
        add("at <=", rollup::Arg::Int(until.get()));
    }
    if let Some(before) = filter.before_id {
        add("id <", rollup::Arg::Int(before));
    }
    let filter_sql = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    args.push(rollup::Arg::Int(filter.limit.clamp(1, AUDIT_QUERY_LIMIT)));
    let sql = format!(
        "SELECT id, at, actor, action, subject, before_json, after_json FROM audit_log
         {filter_sql} ORDER BY id DESC LIMIT {mark}{}",
        args.len()
    );
    (sql, args)
}

/// A stored SHA-256 as a [`CredentialHash`].
fn credential_hash(table: &'static str, bytes: &[u8]) -> Result<CredentialHash, StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt {
        table,
        reason: format!("a hash of {} bytes, not 32", bytes.len()),
    })
}

/// What [`Store::person_usage`] adds up for one person.
#[derive(Default)]
struct PersonSums {
    products: std::collections::BTreeSet<String>,
    expense_minor: std::collections::BTreeMap<String, i64>,
    gateway_nanos: std::collections::BTreeMap<String, i64>,
    last_activity: Option<i64>,
}

/// Builds [`Store::person_usage`] from rows of its three sources, in any order and grouped or
/// not: emails are lowercased here (ASCII letters only, as SQLite's `lower` and PostgreSQL's
/// under the C collation), amounts are summed per currency (saturating) and the latest time
/// of any row is the person's last activity.
#[derive(Default)]
struct PeopleUsage {
    people: std::collections::BTreeMap<String, PersonSums>,
}

impl PeopleUsage {
    /// Updates the sums of `email` (created on first use) with `f`, and its last activity
    /// with `at`. Allocates only for a person not seen before, or an email to lowercase.
    fn person(&mut self, email: &str, at: i64, f: impl FnOnce(&mut PersonSums)) {
        let lowered;
        let key = if email.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = email.to_ascii_lowercase();
            lowered.as_str()
        } else {
            email
        };
        let update = |sums: &mut PersonSums| {
            sums.last_activity = Some(sums.last_activity.map_or(at, |last| last.max(at)));
            f(sums);
        };
        match self.people.get_mut(key) {
            Some(sums) => update(sums),
            None => {
                let mut sums = PersonSums::default();
                update(&mut sums);
                self.people.insert(key.to_owned(), sums);
            }
        }
    }

    /// A product seen on a device `email` owns, last at `last_seen`.
    fn product(&mut self, email: &str, product: &str, last_seen: i64) {
        self.person(email, last_seen, |sums| {
            if !sums.products.contains(product) {
                sums.products.insert(product.to_owned());
            }
        });
    }

    /// Expense spend paid by `email` (minor units), last at `at`.
    fn expense(&mut self, email: &str, currency: &str, amount_minor: i64, at: i64) {
        self.person(email, at, |sums| add_to(&mut sums.expense_minor, currency, amount_minor));
    }

    /// Gateway spend with `email` as the end user (billionths), last at `at`.
    fn gateway(&mut self, email: &str, currency: &str, cost_nanos: i64, at: i64) {
        self.person(email, at, |sums| add_to(&mut sums.gateway_nanos, currency, cost_nanos));
    }

    /// Every person, sorted by email.
    fn finish(self) -> Vec<PersonUsage> {
        self.people
            .into_iter()
            .map(|(email, sums)| PersonUsage {
                email,
                products: sums.products.into_iter().collect(),
                expense_minor: sums.expense_minor.into_iter().collect(),
                gateway_nanos: sums.gateway_nanos.into_iter().collect(),
                last_activity: UnixSecs(sums.last_activity.unwrap_or_default()),
            })
            .collect()
    }
}

/// Adds `amount` to the sum of `currency`, saturating.
fn add_to(sums: &mut std::collections::BTreeMap<String, i64>, currency: &str, amount: i64) {
    match sums.get_mut(currency) {
        Some(sum) => *sum = sum.saturating_add(amount),
        None => {
            sums.insert(currency.to_owned(), amount);
        }
    }
}

/// Parses the stored role name.
fn role(table: &'static str, name: &str) -> Result<crate::model::Role, StoreError> {
    name.parse().map_err(|reason| StoreError::Corrupt { table, reason })
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_or_locked_sqlite_database_is_unavailable_and_a_constraint_is_not() {
        let failure = |code| {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            ))
        };
        assert!(failure(rusqlite::ffi::SQLITE_BUSY).is_unavailable());
        assert!(failure(rusqlite::ffi::SQLITE_LOCKED).is_unavailable());
        assert!(!failure(rusqlite::ffi::SQLITE_CONSTRAINT).is_unavailable());
        let timeout = deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait);
        assert!(StoreError::Pool(timeout).is_unavailable());
        let waited = std::time::Duration::from_secs(2);
        assert!(StoreError::NoAnswer { waited }.is_unavailable());
        assert!(!StoreError::WriterStopped.is_unavailable());
        assert!(!StoreError::Unfinished.is_unavailable());
        assert!(!StoreError::NoFreeHostId { host: "h".into() }.is_unavailable());
        assert!(!StoreError::BackupLocked { tries: 3 }.is_unavailable());
        // A group's failure answered to each caller is classified as the failure itself.
        let shared = |e| StoreError::Shared(std::sync::Arc::new(e));
        assert!(shared(failure(rusqlite::ffi::SQLITE_BUSY)).is_unavailable());
        assert!(!shared(failure(rusqlite::ffi::SQLITE_CONSTRAINT)).is_unavailable());
        assert!(!shared(StoreError::WriterStopped).is_unavailable());
    }

    /// An error's message and the messages of its sources, outermost first, as a report of
    /// the whole chain prints them (`anyhow`'s `{:#}`).
    fn chain(e: &dyn std::error::Error) -> String {
        let mut line = e.to_string();
        let mut next = e.source();
        while let Some(cause) = next {
            line.push_str(": ");
            line.push_str(&cause.to_string());
            next = cause.source();
        }
        line
    }

    #[tokio::test]
    async fn a_nested_store_failure_names_each_cause_once() {
        let task = tokio::spawn(std::future::pending::<()>());
        task.abort();
        let Err(join) = task.await else { unreachable!("an aborted task cannot finish") };
        let join_text = join.to_string();
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            Some("database is locked".into()),
        );
        let json = serde_json::from_str::<Vec<String>>("[").map(drop);
        let Err(json) = json else { unreachable!("`[` is not JSON") };
        let json_text = json.to_string();
        let shared = |e| StoreError::Shared(std::sync::Arc::new(e));
        let cases: Vec<(Box<dyn std::error::Error>, &str)> = vec![
            (Box::new(shared(StoreError::Sqlite(busy))), "database is locked"),
            (Box::new(shared(StoreError::Join(join))), &join_text),
            (
                Box::new(crate::api::ApiError::Store(shared(StoreError::Json {
                    what: "products",
                    error: json,
                }))),
                &json_text,
            ),
            (
                Box::new(crate::ingest::file::ImportError::Store(shared(
                    StoreError::WriterStopped,
                ))),
                "the store writer has stopped",
            ),
            (
                Box::new(crate::connectors::ConnectorError::Store(shared(
                    StoreError::NoFreeHostId { host: "h".into() },
                ))),
                "no free duplicate host id",
            ),
        ];
        for (e, cause) in cases {
            let line = chain(e.as_ref());
            assert_eq!(line.matches(cause).count(), 1, "{line}");
        }
    }

    /// The errors that wrap an IO, JSON, TLS or HTTP-client error show it in their message and
    /// do not also return it from `source()`, so a whole chain names it once.
    #[test]
    fn a_wrapped_io_or_library_error_is_named_once() {
        let reason = "the disk said no";
        let io = || std::io::Error::other(reason);
        let json = || serde_json::from_str::<Vec<String>>("[").map(drop).unwrap_err();
        let json_text = json().to_string();
        let path = std::path::PathBuf::from("x");
        let cases: Vec<(Box<dyn std::error::Error>, &str)> = vec![
            (Box::new(StoreError::Io { path: "x".into(), error: io() }), reason),
            (
                Box::new(crate::ingest::file::ImportError::Io { file: "x".into(), error: io() }),
                reason,
            ),
            (Box::new(crate::cli::CommandError::Write { path: path.clone(), error: io() }), reason),
            (Box::new(crate::cli::CommandError::from(json())), &json_text),
            (Box::new(crate::api::upload::BodyError::Io { path: "x".into(), error: io() }), reason),
            (Box::new(crate::api::tls::TlsError::Io { path: "x".into(), error: io() }), reason),
            (Box::new(crate::mdm::MdmError::Io { path: "x".into(), error: io() }), reason),
            (Box::new(crate::ingest::drop::DropError::Io { path, error: io() }), reason),
            (Box::new(crate::client::ClientError::from(io())), reason),
            (
                Box::new(crate::oidc::OidcError::Request {
                    what: "JWKS",
                    error: crate::client::ClientError::from(io()),
                }),
                reason,
            ),
        ];
        for (e, cause) in cases {
            let line = chain(e.as_ref());
            assert_eq!(line.matches(cause).count(), 1, "{line}");
            assert!(e.source().is_none(), "{line}: the cause is in the message");
        }
    }
}
