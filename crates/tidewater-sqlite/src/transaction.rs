//! Run a closure in a transaction on a connection's thread: committed on
//! success, rolled back on error or panic, retried with backoff when the
//! database is busy.

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tidewater::{Pool, RetryPolicy};

use crate::connection::Outcome;
use crate::error::{SqliteError, is_busy};
use crate::manager::SqliteManager;

/// Runs `body` in a write transaction (`BEGIN IMMEDIATE`) on a connection
/// from `pool`, on the connection's thread. Commits when it returns `Ok`;
/// rolls back when it returns `Err` or panics (the panic then continues in
/// the caller). When SQLite reports the database busy or locked
/// ([`is_busy`]: `SQLITE_BUSY`, `SQLITE_LOCKED`) at `BEGIN`, in the body or
/// at `COMMIT`, the transaction is rolled back and run again on a fresh
/// one, after a random delay that doubles each time, up to
/// `policy.max_attempts` attempts in all.
///
/// Why `BEGIN IMMEDIATE`: it takes the write lock before the body runs, so
/// a writer that must wait does so at `BEGIN`, under `busy_timeout`. A
/// deferred transaction takes it at its first write instead; if another
/// connection wrote since the transaction's first read, SQLite cannot let
/// it wait (its snapshot is stale) and fails it at once with
/// `SQLITE_BUSY_SNAPSHOT`, after the body has done its reading. Use
/// [`transaction_with`] for read-only or deferred transactions.
///
/// The body runs on another thread, so it owns what it uses (`move`), and
/// may run more than once.
///
/// # Errors
/// The body's error, or the pool's or the connection's, converted into `E`.
///
/// ```
/// # #[derive(Debug)] enum AppError { Pool(tidewater::Error), Db(tidewater_sqlite::SqliteError), Funds }
/// # impl From<tidewater::Error> for AppError { fn from(e: tidewater::Error) -> Self { Self::Pool(e) } }
/// # impl From<tidewater_sqlite::SqliteError> for AppError { fn from(e: tidewater_sqlite::SqliteError) -> Self { Self::Db(e) } }
/// # impl From<rusqlite::Error> for AppError { fn from(e: rusqlite::Error) -> Self { Self::Db(e.into()) } }
/// # impl std::fmt::Display for AppError { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{self:?}") } }
/// # impl std::error::Error for AppError { fn source(&self) -> Option<&(dyn std::error::Error + 'static)> { match self { Self::Db(e) => Some(e), _ => None } } }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), AppError> {
/// use tidewater_sqlite::{RetryPolicy, SqliteManager, SqliteOptions, transaction};
///
/// let pool = SqliteManager::new(SqliteOptions::in_memory())?.into_pool(Default::default()).unwrap();
/// pool.get().await?.execute_batch(
///     "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER);
///      INSERT INTO accounts VALUES (1, 100), (2, 0);",
/// ).await?;
/// let amount = 10;
/// let moved = transaction(&pool, RetryPolicy::default(), move |tx| {
///     let balance: i64 = tx.query_row("SELECT balance FROM accounts WHERE id = 1", [], |r| r.get(0))?;
///     if balance < amount {
///         return Err(AppError::Funds); // rolled back
///     }
///     tx.execute("UPDATE accounts SET balance = balance - ?1 WHERE id = 1", [amount])?;
///     tx.execute("UPDATE accounts SET balance = balance + ?1 WHERE id = 2", [amount])?;
///     Ok(amount)
/// })
/// .await?;
/// assert_eq!(moved, 10);
/// # Ok(()) }
/// ```
pub async fn transaction<T, E, F>(
    pool: &Pool<SqliteManager>,
    policy: RetryPolicy,
    body: F,
) -> Result<T, E>
where
    F: FnMut(&Transaction<'_>) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<tidewater::Error> + From<SqliteError> + std::error::Error + Send + 'static,
{
    transaction_with(pool, policy, TransactionBehavior::Immediate, body).await
}

/// [`transaction`], beginning with `behavior`: `Deferred` for a read-only
/// transaction (no write lock taken), `Exclusive` to keep readers out in
/// rollback-journal mode.
///
/// # Errors
/// As [`transaction`].
///
/// ```no_run
/// # #[derive(Debug)] struct AppError;
/// # impl From<tidewater::Error> for AppError { fn from(_: tidewater::Error) -> Self { Self } }
/// # impl From<tidewater_sqlite::SqliteError> for AppError { fn from(_: tidewater_sqlite::SqliteError) -> Self { Self } }
/// # impl From<rusqlite::Error> for AppError { fn from(_: rusqlite::Error) -> Self { Self } }
/// # impl std::fmt::Display for AppError { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("app") } }
/// # impl std::error::Error for AppError {}
/// # async fn run(pool: tidewater::Pool<tidewater_sqlite::SqliteManager>) -> Result<(), AppError> {
/// use rusqlite::TransactionBehavior;
/// use tidewater_sqlite::{RetryPolicy, transaction_with};
///
/// // Two reads from one snapshot.
/// let (orders, paid) = transaction_with(&pool, RetryPolicy::default(), TransactionBehavior::Deferred, |tx| {
///     let orders: i64 = tx.query_row("SELECT count(*) FROM orders", [], |r| r.get(0))?;
///     let paid: i64 = tx.query_row("SELECT count(*) FROM orders WHERE paid", [], |r| r.get(0))?;
///     Ok::<_, AppError>((orders, paid))
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn transaction_with<T, E, F>(
    pool: &Pool<SqliteManager>,
    policy: RetryPolicy,
    behavior: TransactionBehavior,
    body: F,
) -> Result<T, E>
where
    F: FnMut(&Transaction<'_>) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<tidewater::Error> + From<SqliteError> + std::error::Error + Send + 'static,
{
    let mut body = body;
    let mut attempt = 1;
    loop {
        let conn = pool.get().await?;
        // The body goes to the connection's thread and comes back with the
        // result, for the next attempt.
        let outcome = conn
            .call(move |c| {
                let result = attempt_once(c, behavior, &mut body);
                (body, result)
            })
            .await?;
        let result = match outcome {
            Outcome::Done((returned, result)) => {
                body = returned;
                result
            }
            Outcome::Panicked(payload) => {
                drop(conn); // closed: the pool frees its slot
                std::panic::resume_unwind(payload)
            }
            Outcome::Refused(error) => return Err(error.into()),
        };
        match result {
            Err(error) if attempt < policy.max_attempts && is_busy(&error) => {
                drop(conn);
                tracing::debug!(attempt, %error, "database busy; retrying the transaction");
                tokio::time::sleep(policy.backoff.delay(attempt)).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// One attempt on the connection's thread. Dropping the transaction
/// without a commit (an error, a panic, a failed commit) rolls it back.
fn attempt_once<T, E, F>(
    conn: &mut Connection,
    behavior: TransactionBehavior,
    body: &mut F,
) -> Result<T, E>
where
    F: FnMut(&Transaction<'_>) -> Result<T, E>,
    E: From<SqliteError>,
{
    let tx = conn
        .transaction_with_behavior(behavior)
        .map_err(SqliteError::from)?;
    let value = body(&tx)?;
    tx.commit().map_err(SqliteError::from)?;
    Ok(value)
}
