//! The seam between the statements both backends share ([`super::queries`]) and the two
//! drivers: a [`Conn`] that runs a statement, a [`Row`] that reads a column by name, and
//! [`FromRow`], which maps a row type once for both.
//!
//! Statements are written once in PostgreSQL's dialect (`$n` parameters, casts where
//! PostgreSQL cannot infer a type, `COLLATE "C"` for byte order) and translated for SQLite
//! (see [`rollup::sqlite`]). What really
//! differs between the dialects is a method of [`Conn`] (today the row lock of a read that is
//! followed by a write in the same transaction).
//!
//! The SQLite side is synchronous: its [`Conn`] methods finish before they return, so the
//! shared `async` logic runs to completion inside the store's blocking closure through
//! [`ready`], which polls once and never waits.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use tokio_postgres::types::{FromSql as PgFromSql, ToSql as PgToSql};

use super::{StoreError, rollup};

/// A statement parameter both drivers can bind: anything that is `ToSql` for both.
pub(crate) trait Param: Sync {
    /// The value for tokio-postgres.
    fn pg(&self) -> &(dyn PgToSql + Sync);
    /// The value for rusqlite.
    fn lite(&self) -> &dyn rusqlite::ToSql;
}

impl<T: PgToSql + rusqlite::ToSql + Sync> Param for T {
    fn pg(&self) -> &(dyn PgToSql + Sync) {
        self
    }

    fn lite(&self) -> &dyn rusqlite::ToSql {
        self
    }
}

/// A column value both drivers can read: anything that is `FromSql` for both.
pub(crate) trait Column: for<'a> PgFromSql<'a> + rusqlite::types::FromSql {}

impl<T: for<'a> PgFromSql<'a> + rusqlite::types::FromSql> Column for T {}

/// A result row of either driver.
pub(crate) trait Row {
    /// The value of the column named `name` (its name or alias in the statement).
    fn get<T: Column>(&self, name: &str) -> Result<T, StoreError>;
    /// The value of the column at `index`, for single values and tuples.
    fn at<T: Column>(&self, index: usize) -> Result<T, StoreError>;
}

impl Row for tokio_postgres::Row {
    fn get<T: Column>(&self, name: &str) -> Result<T, StoreError> {
        Ok(self.try_get(name)?)
    }

    fn at<T: Column>(&self, index: usize) -> Result<T, StoreError> {
        Ok(self.try_get(index)?)
    }
}

impl Row for rusqlite::Row<'_> {
    fn get<T: Column>(&self, name: &str) -> Result<T, StoreError> {
        Ok(rusqlite::Row::get(self, name)?)
    }

    fn at<T: Column>(&self, index: usize) -> Result<T, StoreError> {
        Ok(rusqlite::Row::get(self, index)?)
    }
}

/// A type read from one result row, mapped once for both drivers.
pub(crate) trait FromRow: Sized {
    /// Reads the row.
    fn from_row(r: &impl Row) -> Result<Self, StoreError>;
}

/// Implements [`FromRow`] for a struct read column by column, by name (the one mapping of
/// the row type for both drivers): `field` reads the column of the same name,
/// `field = "column"` another column, and `field as TextList` a text list ([`TextList`]).
macro_rules! from_row {
    ($ty:ident { $($field:ident $(= $col:literal)? $(as $list:ident)?),* $(,)? }) => {
        impl $crate::store::sql::FromRow for $ty {
            fn from_row(
                r: &impl $crate::store::sql::Row,
            ) -> Result<Self, $crate::store::StoreError> {
                use $crate::store::sql::from_row as column;
                Ok($ty { $($field: column!(@column r, $field $(= $col)? $(as $list)?),)* })
            }
        }
    };
    (@column $r:ident, $field:ident) => {
        $r.get(stringify!($field))?
    };
    (@column $r:ident, $field:ident = $col:literal) => {
        $r.get($col)?
    };
    (@column $r:ident, $field:ident as $list:ident) => {
        $r.get::<$crate::store::sql::$list>(stringify!($field))?.0
    };
}
pub(crate) use from_row;

/// A single value is the first column.
pub(crate) struct One<T>(pub(crate) T);

impl<T: Column> FromRow for One<T> {
    fn from_row(r: &impl Row) -> Result<Self, StoreError> {
        Ok(One(r.at(0)?))
    }
}

impl<A: Column, B: Column> FromRow for (A, B) {
    fn from_row(r: &impl Row) -> Result<Self, StoreError> {
        Ok((r.at(0)?, r.at(1)?))
    }
}

impl<A: Column, B: Column, C: Column> FromRow for (A, B, C) {
    fn from_row(r: &impl Row) -> Result<Self, StoreError> {
        Ok((r.at(0)?, r.at(1)?, r.at(2)?))
    }
}

/// A lock that serialises one kind of write across collectors ([`Conn::lock`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Lock<'a> {
    /// Descriptor mappings: a teach or an undo holds it exclusively, an import chunk shared
    /// (see the PostgreSQL store's `add_expenses`), so no line is stored as a candidate by a
    /// chunk that read the mappings before a teach committed (issue 17).
    Mappings,
    /// The enrollment of one host id: one enrollment per host id decides at a time (a row
    /// lock cannot serialise two first enrollments: there is no row yet).
    Enrollment(&'a str),
    /// The privacy mode's record: several collectors starting at once read and record one
    /// answer.
    PrivacyMode,
}

/// The advisory lock key of descriptor mappings ("mapping" in ASCII).
pub(crate) const MAPPING_LOCK: i64 = 0x006d_6170_7069_6e67;
/// The advisory lock class of enrollments ("enro" in ASCII); the key is the host id's hash.
const ENROLL_LOCK: i32 = 0x656e_726f;

/// A connection or transaction of either driver.
pub(crate) trait Conn {
    /// The row lock a read takes before it writes what it read, in the same transaction:
    /// `FOR UPDATE` on PostgreSQL; nothing on SQLite, where a writing transaction starts
    /// with `BEGIN IMMEDIATE` and so holds the database's write lock already.
    fn for_update(&self) -> &'static str;

    /// Takes `lock` until the end of this transaction: on PostgreSQL an advisory transaction
    /// lock (or a table lock), which serialises the work of every collector sharing the
    /// database; nothing on SQLite, whose writing transactions (`BEGIN IMMEDIATE`) are
    /// serialised already.
    async fn lock(&self, lock: Lock<'_>) -> Result<(), StoreError>;

    /// Every row of a query.
    async fn query<T: FromRow>(
        &self,
        sql: &str,
        params: &[&dyn Param],
    ) -> Result<Vec<T>, StoreError>;

    /// The first row of a query, if any.
    async fn query_opt<T: FromRow>(
        &self,
        sql: &str,
        params: &[&dyn Param],
    ) -> Result<Option<T>, StoreError>;

    /// Runs a statement; answers the number of rows it changed.
    async fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<u64, StoreError>;
}

/// Runs a future of SQLite work, which never waits, to its end.
///
/// # Errors
/// The future's own error, or [`StoreError::Unfinished`] if it did wait (a bug: nothing on the
/// SQLite side of [`Conn`] is asynchronous).
pub(crate) fn ready<T>(work: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    let mut work = std::pin::pin!(work);
    match work.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => Err(StoreError::Unfinished),
    }
}

impl Conn for rusqlite::Connection {
    fn for_update(&self) -> &'static str {
        ""
    }

    async fn lock(&self, _lock: Lock<'_>) -> Result<(), StoreError> {
        Ok(())
    }

    async fn query<T: FromRow>(
        &self,
        sql: &str,
        params: &[&dyn Param],
    ) -> Result<Vec<T>, StoreError> {
        let mut stmt = self.prepare_cached(&lite(sql))?;
        let mut rows = stmt.query(&*lite_params(params))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(T::from_row(r)?);
        }
        Ok(out)
    }

    async fn query_opt<T: FromRow>(
        &self,
        sql: &str,
        params: &[&dyn Param],
    ) -> Result<Option<T>, StoreError> {
        let mut stmt = self.prepare_cached(&lite(sql))?;
        let mut rows = stmt.query(&*lite_params(params))?;
        rows.next()?.map(T::from_row).transpose()
    }

    async fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<u64, StoreError> {
        let mut stmt = self.prepare_cached(&lite(sql))?;
        let changed = stmt.execute(&*lite_params(params))?;
        Ok(u64::try_from(changed).unwrap_or(u64::MAX))
    }
}

/// A statement in SQLite's dialect: [`rollup::sqlite`]'s parameters, and PostgreSQL's byte
/// order (`COLLATE "C"`) as SQLite names it.
fn lite(sql: &str) -> String {
    rollup::sqlite(sql).replace("COLLATE \"C\"", "COLLATE BINARY")
}

fn lite_params<'p>(params: &[&'p dyn Param]) -> Vec<&'p dyn rusqlite::ToSql> {
    params.iter().map(|p| p.lite()).collect()
}

fn pg_params<'p>(params: &[&'p dyn Param]) -> Vec<&'p (dyn PgToSql + Sync)> {
    params.iter().map(|p| p.pg()).collect()
}

/// [`Conn`] for a pooled PostgreSQL client and its transactions, with statements prepared
/// once per connection (deadpool's statement cache).
macro_rules! pg_conn {
    ($($conn:ty => $driver:ty),*) => {$(
        impl Conn for $conn {
            fn for_update(&self) -> &'static str {
                " FOR UPDATE"
            }

            async fn lock(&self, lock: Lock<'_>) -> Result<(), StoreError> {
                match lock {
                    Lock::Mappings => {
                        Conn::execute(self, "SELECT pg_advisory_xact_lock($1)", &[&MAPPING_LOCK])
                            .await?
                    }
                    Lock::Enrollment(host_id) => {
                        Conn::execute(
                            self,
                            "SELECT pg_advisory_xact_lock($1::int4, hashtext($2))",
                            &[&ENROLL_LOCK, &host_id],
                        )
                        .await?
                    }
                    Lock::PrivacyMode => {
                        Conn::execute(self, "LOCK TABLE privacy_mode IN EXCLUSIVE MODE", &[]).await?
                    }
                };
                Ok(())
            }

            async fn query<T: FromRow>(
                &self,
                sql: &str,
                params: &[&dyn Param],
            ) -> Result<Vec<T>, StoreError> {
                let stmt = self.prepare_cached(sql).await?;
                let rows = <$driver>::query(self, &stmt, &pg_params(params)).await?;
                rows.iter().map(T::from_row).collect()
            }

            async fn query_opt<T: FromRow>(
                &self,
                sql: &str,
                params: &[&dyn Param],
            ) -> Result<Option<T>, StoreError> {
                let stmt = self.prepare_cached(sql).await?;
                let row = <$driver>::query_opt(self, &stmt, &pg_params(params)).await?;
                row.as_ref().map(T::from_row).transpose()
            }

            async fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<u64, StoreError> {
                let stmt = self.prepare_cached(sql).await?;
                Ok(<$driver>::execute(self, &stmt, &pg_params(params)).await?)
            }
        }
    )*};
}

pg_conn!(
    deadpool_postgres::Client => tokio_postgres::Client,
    deadpool_postgres::Transaction<'_> => tokio_postgres::Transaction<'_>
);

/// A statement whose parameters are all text, declared as text: PostgreSQL then knows the
/// type of a parameter the statement does not use (the erasure's steps share one argument
/// list, [`super::erase::PERSON`]).
pub(crate) trait TextParams: Conn {
    /// Runs the statement; answers the number of rows it changed.
    async fn execute_text(&self, sql: &str, params: &[&str]) -> Result<u64, StoreError>;
}

impl TextParams for rusqlite::Connection {
    async fn execute_text(&self, sql: &str, params: &[&str]) -> Result<u64, StoreError> {
        let params: Vec<&dyn Param> = params.iter().map(|p| -> &dyn Param { p }).collect();
        Conn::execute(self, sql, &params).await
    }
}

impl TextParams for deadpool_postgres::Transaction<'_> {
    async fn execute_text(&self, sql: &str, params: &[&str]) -> Result<u64, StoreError> {
        use tokio_postgres::types::Type;
        let stmt = self.prepare_typed(sql, &vec![Type::TEXT; params.len()]).await?;
        let params: Vec<&(dyn PgToSql + Sync)> =
            params.iter().map(|p| -> &(dyn PgToSql + Sync) { p }).collect();
        Ok(tokio_postgres::Transaction::execute(self, &stmt, &params).await?)
    }
}

/// No column at all: a row that only says a query found something.
impl FromRow for () {
    fn from_row(_: &impl Row) -> Result<Self, StoreError> {
        Ok(())
    }
}

/// The spellings that differ between the dialects beyond what [`lite`] translates, for the
/// statements [`super::queries`] writes once.
pub(crate) trait Dialect {
    /// The larger of two values: `GREATEST` on PostgreSQL, the scalar `MAX` on SQLite.
    const GREATEST: &'static str;
    /// The position of a substring in a text (0 when absent): `strpos` or `instr`, both
    /// taking the text first.
    const STRPOS: &'static str;
    /// Whether any boolean of a group is true: `bool_or` on PostgreSQL, `MAX` over SQLite's
    /// integers (NULL for no row on both).
    const ANY_TRUE: &'static str;

    /// The text column `v` of the statement `select`, in its order, as one [`TextList`]
    /// value: an `ARRAY` on PostgreSQL, the values joined by newlines on SQLite.
    fn text_list(select: &str) -> String;

    /// The condition that a value is one of the [`TextArray`] parameter `param` (`$n`):
    /// `= ANY($n)` on PostgreSQL, `IN` the elements of the JSON array on SQLite.
    fn in_texts(param: &str) -> String;
}

impl Dialect for rusqlite::Connection {
    const GREATEST: &'static str = "MAX";
    const STRPOS: &'static str = "instr";
    const ANY_TRUE: &'static str = "MAX";

    fn text_list(select: &str) -> String {
        format!("(SELECT group_concat(v, char(10)) FROM ({select}))")
    }

    fn in_texts(param: &str) -> String {
        format!("IN (SELECT value FROM json_each({param}))")
    }
}

/// [`Dialect`] for a pooled PostgreSQL client and its transactions.
macro_rules! pg_dialect {
    ($($conn:ty),*) => {$(
        impl Dialect for $conn {
            const GREATEST: &'static str = "GREATEST";
            const STRPOS: &'static str = "strpos";
            const ANY_TRUE: &'static str = "bool_or";

            fn text_list(select: &str) -> String {
                format!("ARRAY({select})")
            }

            fn in_texts(param: &str) -> String {
                format!("= ANY({param})")
            }
        }
    )*};
}

pg_dialect!(deadpool_postgres::Client, deadpool_postgres::Transaction<'_>);

/// A list of texts read from one column ([`Dialect::text_list`]): a `text[]` on PostgreSQL,
/// newline-joined text on SQLite, where NULL (no value) is the empty list.
pub(crate) struct TextList(pub(crate) Vec<String>);

impl rusqlite::types::FromSql for TextList {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        match value {
            rusqlite::types::ValueRef::Null => Ok(TextList(Vec::new())),
            text => Ok(TextList(text.as_str()?.split('\n').map(str::to_owned).collect())),
        }
    }
}

impl<'a> PgFromSql<'a> for TextList {
    fn from_sql(
        ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(TextList(<Vec<String> as PgFromSql<'a>>::from_sql(ty, raw)?))
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <Vec<String> as PgFromSql<'a>>::accepts(ty)
    }
}

/// Texts bound as one parameter ([`Dialect::in_texts`]), so that a statement is the same for
/// any number of them: a `text[]` on PostgreSQL, a JSON array on SQLite.
#[derive(Debug)]
pub(crate) struct TextArray<'a>(pub(crate) &'a [String]);

impl PgToSql for TextArray<'_> {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        // The driver's buffer type, as its own `to_sql_checked!` names it.
        out: &mut tokio_postgres::types::private::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.0.to_sql(ty, out)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <&[String] as PgToSql>::accepts(ty)
    }

    tokio_postgres::types::to_sql_checked!();
}

impl rusqlite::ToSql for TextArray<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        let json = serde_json::to_string(self.0)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(rusqlite::types::ToSqlOutput::from(json))
    }
}
