//! Run a closure in a transaction: committed on success, rolled back on
//! error or panic, retried with backoff on serialization failure and
//! deadlock.

use tidewater::{Pool, RetryPolicy};
use tokio_postgres::Transaction;
use tokio_postgres::error::SqlState;

use crate::error::PgError;
use crate::manager::PgManager;

/// Whether `error`, or any error behind it, is a serialization failure
/// (`40001`) or a deadlock (`40P01`): a conflict that a retry resolves.
///
/// ```
/// let error = std::io::Error::other("not a database error");
/// assert!(!tidewater_postgres::is_conflict(&error));
/// ```
pub fn is_conflict(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        let code = error
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(tokio_postgres::Error::code)
            .or_else(|| error.downcast_ref::<PgError>().and_then(PgError::code));
        if matches!(code, Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED)
        {
            return true;
        }
        next = error.source();
    }
    false
}

/// Runs `body` in a transaction on a connection from `pool`. Commits when
/// it returns `Ok`; rolls back when it returns `Err`, panics or is
/// cancelled. A conflict ([`is_conflict`]) in the body or at commit is
/// retried on a fresh transaction, after a random delay that doubles each
/// time, up to `policy.max_attempts` attempts in all.
///
/// # Errors
/// The body's error, or the pool's or the database's, converted into `E`.
///
/// ```no_run
/// # #[derive(Debug)] enum AppError { Pool(tidewater::Error), Db(tidewater_postgres::PgError), Funds }
/// # impl From<tidewater::Error> for AppError { fn from(e: tidewater::Error) -> Self { Self::Pool(e) } }
/// # impl From<tidewater_postgres::PgError> for AppError { fn from(e: tidewater_postgres::PgError) -> Self { Self::Db(e) } }
/// # impl From<tokio_postgres::Error> for AppError { fn from(e: tokio_postgres::Error) -> Self { Self::Db(e.into()) } }
/// # impl std::fmt::Display for AppError { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{self:?}") } }
/// # impl std::error::Error for AppError {}
/// # async fn run(pool: tidewater::Pool<tidewater_postgres::PgManager>) -> Result<(), AppError> {
/// use tidewater_postgres::{transaction, RetryPolicy};
/// let moved = transaction(&pool, RetryPolicy::default(), async |tx| {
///     let balance: i64 = tx.query_one("SELECT balance FROM accounts WHERE id = 1 FOR UPDATE", &[]).await?.get(0);
///     if balance < 10 {
///         return Err(AppError::Funds); // rolled back
///     }
///     tx.execute("UPDATE accounts SET balance = balance - 10 WHERE id = 1", &[]).await?;
///     tx.execute("UPDATE accounts SET balance = balance + 10 WHERE id = 2", &[]).await?;
///     Ok(10)
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn transaction<T, E, F>(
    pool: &Pool<PgManager>,
    policy: RetryPolicy,
    mut body: F,
) -> Result<T, E>
where
    F: AsyncFnMut(&Transaction<'_>) -> Result<T, E>,
    E: From<tidewater::Error> + From<PgError> + std::error::Error + 'static,
{
    let mut attempt = 1;
    loop {
        let mut conn = pool.get().await?;
        let outcome = async {
            let tx = conn.transaction().await.map_err(PgError::from)?;
            let value = body(&tx).await?;
            tx.commit().await.map_err(PgError::from)?;
            Ok::<T, E>(value)
        }
        .await;
        match outcome {
            Err(error) if attempt < policy.max_attempts && is_conflict(&error) => {
                drop(conn);
                tracing::debug!(attempt, %error, "transaction conflict; retrying");
                tokio::time::sleep(policy.backoff.delay(attempt)).await;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}
