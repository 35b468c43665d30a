//! SQLite through diesel-async's `SyncConnectionWrapper`: diesel's
//! synchronous `SqliteConnection`, each call on tokio's blocking pool.
//! Needs a multi-threaded Tokio runtime (the wrapper waits for an
//! abandoned call with `block_in_place`).

use diesel::QueryResult;
use diesel::SqliteConnection;
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, SimpleAsyncConnection, TransactionManager};
use tidewater::credentials::Credentials;

use crate::driver::sealed::Open;
use crate::error::DieselError;

/// A SQLite database: a file path, a `file:` URI or `:memory:`.
#[derive(Clone, Debug)]
pub struct SqliteTarget {
    url: String,
}

/// How long a statement waits for another connection's lock before
/// `SQLITE_BUSY`, set on every new connection (setup SQL can change it).
pub(crate) const BUSY_TIMEOUT_MS: u32 = 5_000;

impl Open for SyncConnectionWrapper<SqliteConnection> {
    type Target = SqliteTarget;
    type Extra = ();
    const DATABASE: &'static str = "SQLite";
    const CREDENTIALS: bool = false;

    fn parse(url: &str) -> Result<SqliteTarget, DieselError> {
        if url.is_empty() {
            return Err(DieselError::Config(
                "empty SQLite path (use \":memory:\" for an in-memory database)".into(),
            ));
        }
        if url.contains('\0') {
            return Err(DieselError::Config("a NUL byte in the SQLite path".into()));
        }
        Ok(SqliteTarget {
            url: url.to_owned(),
        })
    }

    async fn open(
        target: &SqliteTarget,
        _credentials: Option<&Credentials>,
    ) -> Result<(Self, ()), DieselError> {
        let mut conn = Self::establish(&target.url).await?;
        conn.batch_execute(&format!("PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}"))
            .await
            .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
        Ok((conn, ()))
    }

    async fn check(conn: &mut Self) -> QueryResult<()> {
        conn.batch_execute("SELECT 1").await
    }

    fn is_closed(conn: &mut Self, _extra: &()) -> bool {
        // The wrapper's transaction state panics if a call it started is
        // still running (it cannot be, once its future is gone): treat
        // that as broken rather than let the panic reach the pool.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            <Self as AsyncConnection>::TransactionManager::is_broken_transaction_manager(conn)
        }))
        .unwrap_or(true)
    }

    fn may_be_dirty(_conn: &mut Self, _extra: &()) -> bool {
        // diesel does not expose `sqlite3_get_autocommit`: a transaction
        // begun with plain SQL cannot be ruled out.
        true
    }

    async fn rollback(conn: &mut Self) -> QueryResult<()> {
        match conn.batch_execute("ROLLBACK").await {
            Err(diesel::result::Error::DatabaseError(_, info))
                if info.message().contains("no transaction is active") =>
            {
                Ok(())
            }
            other => other,
        }
    }
}
