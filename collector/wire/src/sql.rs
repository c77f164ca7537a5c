//! `ToSql`/`FromSql` for [`UnixSecs`] and [`SightingKind`], so that the agent's spool and the
//! collector's store bind and read them directly.
//!
//! Behind the `rusqlite` and `postgres` features, which only the crates that already link
//! those drivers turn on. The stored representation is the one the bare values had: a time
//! is an `INTEGER` (SQLite) or `BIGINT` (PostgreSQL) of seconds, a kind its wire name as text.
//! A stored kind this build does not know (written by a newer version, or edited by hand)
//! fails to read with [`crate::UnknownSightingKind`], which names the value.

#[cfg(any(feature = "rusqlite", feature = "postgres"))]
use crate::agent::SightingKind;
#[cfg(any(feature = "rusqlite", feature = "postgres"))]
use crate::time::UnixSecs;

#[cfg(feature = "rusqlite")]
mod sqlite {
    use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

    use super::{SightingKind, UnixSecs};

    impl ToSql for UnixSecs {
        fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
            Ok(ToSqlOutput::from(self.0))
        }
    }

    impl FromSql for UnixSecs {
        fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
            i64::column_result(value).map(UnixSecs)
        }
    }

    impl ToSql for SightingKind {
        fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
            Ok(ToSqlOutput::from(self.as_str()))
        }
    }

    impl FromSql for SightingKind {
        fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
            value.as_str()?.parse().map_err(|e| FromSqlError::Other(Box::new(e)))
        }
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::error::Error;

    use bytes::BytesMut;
    use postgres_types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

    use super::{SightingKind, UnixSecs};
    use crate::agent::UnknownSightingKind;

    type BoxError = Box<dyn Error + Sync + Send>;

    impl ToSql for UnixSecs {
        fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
            self.0.to_sql(ty, out)
        }

        fn accepts(ty: &Type) -> bool {
            <i64 as ToSql>::accepts(ty)
        }

        to_sql_checked!();
    }

    impl<'a> FromSql<'a> for UnixSecs {
        fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
            i64::from_sql(ty, raw).map(UnixSecs)
        }

        fn accepts(ty: &Type) -> bool {
            <i64 as FromSql<'_>>::accepts(ty)
        }
    }

    impl ToSql for SightingKind {
        fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
            self.as_str().to_sql(ty, out)
        }

        fn accepts(ty: &Type) -> bool {
            <&str as ToSql>::accepts(ty)
        }

        to_sql_checked!();
    }

    impl<'a> FromSql<'a> for SightingKind {
        fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
            let name = <&str as FromSql<'_>>::from_sql(ty, raw)?;
            name.parse::<SightingKind>().map_err(|e: UnknownSightingKind| Box::new(e) as BoxError)
        }

        fn accepts(ty: &Type) -> bool {
            <&str as FromSql<'_>>::accepts(ty)
        }
    }
}

#[cfg(all(test, feature = "rusqlite"))]
mod tests {
    use rusqlite::Connection;

    use super::{SightingKind, UnixSecs};

    #[test]
    fn sqlite_stores_the_bare_integer_and_wire_name_and_names_an_unknown_kind() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (at INTEGER NOT NULL, kind TEXT NOT NULL)").unwrap();
        conn.execute(
            "INSERT INTO t VALUES (?1, ?2)",
            (UnixSecs(1_700_000_000), SightingKind::QuicSni),
        )
        .unwrap();
        let raw: (i64, String) =
            conn.query_row("SELECT at, kind FROM t", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        assert_eq!(raw, (1_700_000_000, "quic_sni".to_owned()));
        let typed: (UnixSecs, SightingKind) =
            conn.query_row("SELECT at, kind FROM t", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        assert_eq!(typed, (UnixSecs(1_700_000_000), SightingKind::QuicSni));
        let e =
            conn.query_row("SELECT 'warp_drive'", [], |r| r.get::<_, SightingKind>(0)).unwrap_err();
        assert!(e.to_string().contains("unknown sighting kind \"warp_drive\""), "{e}");
    }
}
