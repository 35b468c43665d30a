//! Run a closure in a transaction: committed on success, rolled back on
//! error or panic, retried with backoff on a conflict.

use sqlx::Connection;
use tidewater::{Pool, RetryPolicy};

use crate::backend::Backend;
use crate::error::is_conflict;
use crate::manager::SqlxManager;

/// Runs `body` in a transaction (sqlx's `begin()`) on a connection from
/// `pool`. Commits when it returns `Ok`; rolls back when it returns `Err`;
/// when it panics or is cancelled the rollback sqlx queues is sent before
/// the connection's next use. A conflict ([`is_conflict`]) in the body or
/// at commit is retried on a fresh transaction, after a random delay that
/// doubles each time, up to `policy.max_attempts` attempts in all.
///
/// # Errors
/// The body's error, or the pool's or the database's, converted into `E`.
///
/// ```no_run
/// # #[derive(Debug)] enum AppError { Pool(tidewater::Error), Db(sqlx::Error), Funds }
/// # impl From<tidewater::Error> for AppError { fn from(e: tidewater::Error) -> Self { Self::Pool(e) } }
/// # impl From<sqlx::Error> for AppError { fn from(e: sqlx::Error) -> Self { Self::Db(e) } }
/// # impl std::fmt::Display for AppError { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{self:?}") } }
/// # impl std::error::Error for AppError {}
/// # async fn run(pool: tidewater::Pool<tidewater_sqlx::SqlxManager<sqlx::Postgres>>) -> Result<(), AppError> {
/// use tidewater_sqlx::{transaction, RetryPolicy};
/// let moved = transaction(&pool, RetryPolicy::default(), async |tx| {
///     let balance: i64 = sqlx::query_scalar("SELECT balance FROM accounts WHERE id = 1 FOR UPDATE")
///         .fetch_one(&mut **tx)
///         .await?;
///     if balance < 10 {
///         return Err(AppError::Funds); // rolled back
///     }
///     sqlx::query("UPDATE accounts SET balance = balance - 10 WHERE id = 1").execute(&mut **tx).await?;
///     sqlx::query("UPDATE accounts SET balance = balance + 10 WHERE id = 2").execute(&mut **tx).await?;
///     Ok(10)
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn transaction<DB, T, E, F>(
    pool: &Pool<SqlxManager<DB>>,
    policy: RetryPolicy,
    mut body: F,
) -> Result<T, E>
where
    DB: Backend,
    F: AsyncFnMut(&mut sqlx::Transaction<'_, DB>) -> Result<T, E>,
    E: From<tidewater::Error> + From<sqlx::Error> + std::error::Error + 'static,
{
    let mut attempt = 1;
    loop {
        let mut conn = pool.get().await?;
        let outcome = async {
            let mut tx = conn.begin().await?;
            match body(&mut tx).await {
                Ok(value) => {
                    tx.commit().await?;
                    Ok::<T, E>(value)
                }
                Err(error) => {
                    // Now, so that locks go at once; should it fail, the
                    // connection's reset sends it before the next use.
                    let _ = tx.rollback().await;
                    Err(error)
                }
            }
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
