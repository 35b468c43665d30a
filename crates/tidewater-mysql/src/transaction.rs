//! Run a closure in a transaction: committed on success, rolled back on
//! error, panic or cancellation, retried with backoff on deadlock and lock
//! wait timeout.

use tidewater::{Pool, RetryPolicy};

use crate::connection::MySqlConnection;
use crate::error::MySqlError;
use crate::manager::MySqlManager;

/// Whether `error`, or any error behind it, is a deadlock (`1213`) or a
/// lock wait timeout (`1205`): a conflict that running the transaction
/// again resolves.
///
/// ```
/// let error = std::io::Error::other("not a database error");
/// assert!(!tidewater_mysql::is_conflict(&error));
/// ```
pub fn is_conflict(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |error| error.source()).any(|error| {
        if let Some(error) = error.downcast_ref::<MySqlError>() {
            return error.is_conflict();
        }
        matches!(
            error.downcast_ref::<mysql_async::Error>(),
            Some(mysql_async::Error::Server(server))
                if matches!(server.code, crate::error::DEADLOCK | crate::error::LOCK_WAIT_TIMEOUT)
        )
    })
}

/// Runs `body` in a transaction (`START TRANSACTION`) on a connection from
/// `pool`. Commits when it returns `Ok`; rolls back when it returns `Err`
/// (at once, so its locks go before any retry), when it panics (the pool
/// closes the connection) or when the returned future is dropped half-way
/// (the connection is closed, which ends the transaction on the server). A
/// conflict ([`is_conflict`]) in the body or at commit is retried on a
/// fresh transaction, after a random delay that doubles each time, up to
/// `policy.max_attempts` attempts in all.
///
/// The body gets the session itself, with the bounded query methods of
/// [`MySqlConnection`]. The transaction runs at the session's isolation
/// level (MySQL accepts a change only before a transaction starts).
///
/// # Errors
/// The body's error, or the pool's or the database's, converted into `E`.
///
/// ```no_run
/// # #[derive(Debug)] enum AppError { Pool(tidewater::Error), Db(tidewater_mysql::MySqlError), Funds }
/// # impl From<tidewater::Error> for AppError { fn from(e: tidewater::Error) -> Self { Self::Pool(e) } }
/// # impl From<tidewater_mysql::MySqlError> for AppError { fn from(e: tidewater_mysql::MySqlError) -> Self { Self::Db(e) } }
/// # impl std::fmt::Display for AppError { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{self:?}") } }
/// # impl std::error::Error for AppError {}
/// # async fn run(pool: tidewater::Pool<tidewater_mysql::MySqlManager>) -> Result<(), AppError> {
/// use tidewater_mysql::{transaction, RetryPolicy};
/// let moved = transaction(&pool, RetryPolicy::default(), async |tx| {
///     let balance: i64 = tx.query_first("SELECT balance FROM accounts WHERE id = 1 FOR UPDATE").await?.unwrap_or(0);
///     if balance < 10 {
///         return Err(AppError::Funds); // rolled back
///     }
///     tx.query_drop("UPDATE accounts SET balance = balance - 10 WHERE id = 1").await?;
///     tx.query_drop("UPDATE accounts SET balance = balance + 10 WHERE id = 2").await?;
///     Ok(10)
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn transaction<T, E, F>(
    pool: &Pool<MySqlManager>,
    policy: RetryPolicy,
    mut body: F,
) -> Result<T, E>
where
    F: AsyncFnMut(&mut MySqlConnection) -> Result<T, E>,
    E: From<tidewater::Error> + From<MySqlError> + std::error::Error + 'static,
{
    for attempt in 1.. {
        let outcome = {
            let mut conn = pool.get().await?;
            once(&mut conn, &mut body).await
        };
        let error = match outcome {
            Err(error) if attempt < policy.max_attempts && is_conflict(&error) => error,
            outcome => return outcome,
        };
        tracing::debug!(attempt, %error, "transaction conflict; retrying");
        tokio::time::sleep(policy.backoff.delay(attempt)).await;
    }
    unreachable!("attempts are counted up to max_attempts")
}

/// One attempt: begin, body, commit; roll back on error.
async fn once<T, E, F>(conn: &mut MySqlConnection, body: &mut F) -> Result<T, E>
where
    F: AsyncFnMut(&mut MySqlConnection) -> Result<T, E>,
    E: From<MySqlError>,
{
    // Until the transaction has ended one way or the other, the pool would
    // close this connection rather than take it back.
    conn.set_in_helper_transaction(true);
    conn.query_drop("START TRANSACTION").await?;
    let outcome = match body(conn).await {
        Ok(value) => conn
            .query_drop("COMMIT")
            .await
            .map(|()| value)
            .map_err(E::from),
        Err(error) => Err(error),
    };
    if outcome.is_err() && conn.query_drop("ROLLBACK").await.is_err() {
        return outcome; // still marked: the pool closes it
    }
    conn.set_in_helper_transaction(false);
    outcome
}
