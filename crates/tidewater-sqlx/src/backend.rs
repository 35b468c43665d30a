//! What differs between sqlx's databases: credentials, session reset.

use std::future::Future;

use sqlx::{AssertSqlSafe, Connection, Database};
use tidewater::credentials::Credentials;

use crate::manager::SessionReset;

/// The connect options of a database's connections
/// (`PgConnectOptions`, `MySqlConnectOptions`, `SqliteConnectOptions`).
pub type Options<DB> = <<DB as Database>::Connection as Connection>::Options;

mod sealed {
    pub trait Sealed {}
}

/// A database whose sqlx connections tidewater can pool: [`sqlx::Postgres`],
/// [`sqlx::MySql`] and [`sqlx::Sqlite`] (each behind the feature of that
/// name). Sealed: what it does is described on
/// [`SqlxManager`](crate::SqlxManager).
///
/// ```
/// fn pools<DB: tidewater_sqlx::Backend>() {}
/// pools::<sqlx::Postgres>();
/// pools::<sqlx::MySql>();
/// pools::<sqlx::Sqlite>();
/// ```
pub trait Backend: Database + sealed::Sealed {
    /// The database's name in messages ("PostgreSQL").
    #[doc(hidden)]
    const LABEL: &'static str;

    /// Options with the user and password of `credentials`.
    #[doc(hidden)]
    fn with_credentials(options: &Options<Self>, credentials: &Credentials) -> Options<Self>;

    /// Runs SQL (several statements allowed) with the text protocol.
    #[doc(hidden)]
    fn execute<'c>(
        conn: &'c mut Self::Connection,
        sql: &str,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'c;

    /// Brings a returned connection back to a clean session: waits out
    /// what sqlx left queued or unanswered, rolls back a transaction left
    /// open, and with [`SessionReset::Full`] clears session state.
    #[doc(hidden)]
    fn reset(
        conn: &mut Self::Connection,
        mode: SessionReset,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send + '_;
}

fn run_owned<'c, DB>(
    conn: &'c mut DB::Connection,
    sql: &str,
) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'c
where
    DB: Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
{
    let sql = sql.to_owned();
    async move {
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(conn).await?;
        Ok(())
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use sqlx::postgres::{PgConnectOptions, PgConnection};
    use sqlx::{Executor, Postgres, Row};

    use super::*;

    impl sealed::Sealed for Postgres {}

    /// Everything `DISCARD ALL` clears except prepared statements, which
    /// sqlx caches per connection and would then miss.
    const FULL_RESET: &str = "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; \
         SELECT pg_catalog.pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP; DISCARD SEQUENCES";

    impl Backend for Postgres {
        const LABEL: &'static str = "PostgreSQL";

        fn with_credentials(
            options: &PgConnectOptions,
            credentials: &Credentials,
        ) -> PgConnectOptions {
            let options = options.clone().password(credentials.secret());
            match credentials.user() {
                Some(user) => options.username(user),
                None => options,
            }
        }

        fn execute<'c>(
            conn: &'c mut PgConnection,
            sql: &str,
        ) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'c {
            run_owned::<Postgres>(conn, sql)
        }

        async fn reset(conn: &mut PgConnection, mode: SessionReset) -> Result<(), sqlx::Error> {
            // One round trip on the simple-query protocol. Before sending it
            // sqlx flushes what is queued (the ROLLBACK a dropped
            // `Transaction` left) and reads the answers still owed to a
            // query whose future was dropped, as its own pool's `ping` does.
            // The answer tells whether a transaction block is open: in a
            // statement of its own (no block) `now()`, the transaction's
            // start, is the statement's start; inside a block it is the
            // block's earlier start; in a failed block the query fails with
            // 25P02.
            let clean =
                match sqlx::raw_sql("SELECT pg_catalog.now() = pg_catalog.statement_timestamp()")
                    .fetch_one(&mut *conn)
                    .await
                {
                    Ok(row) => row.try_get::<bool, _>(0)?,
                    Err(sqlx::Error::Database(error))
                        if error.code().as_deref() == Some("25P02") =>
                    {
                        false
                    }
                    Err(error) => return Err(error),
                };
            if !clean {
                conn.execute("ROLLBACK").await?;
            }
            if mode == SessionReset::Full {
                conn.execute(FULL_RESET).await?;
            }
            Ok(())
        }
    }
}

#[cfg(feature = "mysql")]
mod mysql {
    use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
    use sqlx::{Executor, MySql};

    use super::*;

    impl sealed::Sealed for MySql {}

    impl Backend for MySql {
        const LABEL: &'static str = "MySQL";

        fn with_credentials(
            options: &MySqlConnectOptions,
            credentials: &Credentials,
        ) -> MySqlConnectOptions {
            let options = options.clone().password(credentials.secret());
            match credentials.user() {
                Some(user) => options.username(user),
                None => options,
            }
        }

        fn execute<'c>(
            conn: &'c mut MySqlConnection,
            sql: &str,
        ) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'c {
            run_owned::<MySql>(conn, sql)
        }

        async fn reset(conn: &mut MySqlConnection, _mode: SessionReset) -> Result<(), sqlx::Error> {
            // sqlx first reads the results still owed to a cancelled query
            // and sends a queued ROLLBACK; this one, harmless outside a
            // transaction, ends any transaction left open (a raw `BEGIN`
            // or `START TRANSACTION` sqlx does not track). sqlx offers no
            // `COM_RESET_CONNECTION`, so `Full` adds nothing here beyond
            // the manager's reset SQL.
            conn.execute("ROLLBACK").await?;
            Ok(())
        }
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
    use sqlx::{Executor, Row, Sqlite};

    use super::*;

    impl sealed::Sealed for Sqlite {}

    impl Backend for Sqlite {
        const LABEL: &'static str = "SQLite";

        fn with_credentials(
            options: &SqliteConnectOptions,
            _credentials: &Credentials,
        ) -> SqliteConnectOptions {
            options.clone()
        }

        fn execute<'c>(
            conn: &'c mut SqliteConnection,
            sql: &str,
        ) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'c {
            run_owned::<Sqlite>(conn, sql)
        }

        async fn reset(conn: &mut SqliteConnection, mode: SessionReset) -> Result<(), sqlx::Error> {
            // The connection's worker thread runs commands in order, so
            // this waits for a cancelled query to finish. SQLite has no SQL
            // to ask whether a transaction is open: a ROLLBACK outside one
            // fails with "no transaction is active", which is the clean case.
            match conn.execute("ROLLBACK").await {
                Ok(_) => {}
                Err(sqlx::Error::Database(error))
                    if error.message().contains("no transaction is active") => {}
                Err(error) => return Err(error),
            }
            if mode == SessionReset::Full {
                let temporary = sqlx::raw_sql(
                    "SELECT type, name FROM temp.sqlite_schema \
                     WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'",
                )
                .fetch_all(&mut *conn)
                .await?;
                for row in temporary {
                    let kind: String = row.try_get(0)?;
                    let name: String = row.try_get(1)?;
                    let drop = format!(
                        "DROP {} IF EXISTS temp.\"{}\"",
                        kind.to_uppercase(),
                        name.replace('"', "\"\"")
                    );
                    sqlx::raw_sql(AssertSqlSafe(drop))
                        .execute(&mut *conn)
                        .await?;
                }
            }
            Ok(())
        }
    }
}
