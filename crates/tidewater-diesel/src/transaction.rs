//! Run a closure in a transaction: committed on success, rolled back on
//! error, retried with backoff on a conflict.

use diesel_async::TransactionManager;
use tidewater::{Pool, RetryPolicy};

use crate::driver::Driver;
use crate::error::is_conflict;
use crate::manager::DieselManager;

/// Runs `body` in a transaction on a connection from `pool`. Commits when
/// it returns `Ok`; rolls back when it returns `Err`. A conflict
/// ([`is_conflict`]: serialization failure, deadlock, MySQL lock wait
/// timeout) in the body or at commit is retried on a fresh transaction
/// and connection, after a random delay that doubles each time, up to
/// `policy.max_attempts` attempts in all.
///
/// Each attempt is what diesel-async's `conn.transaction(..)` does
/// (`BEGIN`, the body, `COMMIT` or `ROLLBACK` through the connection's
/// `TransactionManager`, savepoints when nested), without its `Send`
/// bounds on the body. When the body panics or the future is dropped
/// mid-way, the connection goes back inside a diesel transaction, which
/// the manager's broken check sees: it is discarded, and the server rolls
/// the transaction back as the session closes.
///
/// # Errors
/// The body's error, or the pool's or the database's, converted into `E`.
///
/// ```no_run
/// # #[derive(Debug)] enum AppError { Pool(tidewater::Error), Db(diesel::result::Error), Funds }
/// # impl From<tidewater::Error> for AppError { fn from(e: tidewater::Error) -> Self { Self::Pool(e) } }
/// # impl From<diesel::result::Error> for AppError { fn from(e: diesel::result::Error) -> Self { Self::Db(e) } }
/// # impl std::fmt::Display for AppError { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{self:?}") } }
/// # impl std::error::Error for AppError { fn source(&self) -> Option<&(dyn std::error::Error + 'static)> { match self { Self::Db(e) => Some(e), _ => None } } }
/// # async fn run(pool: tidewater::Pool<tidewater_diesel::PgManager>) -> Result<(), AppError> {
/// use diesel::sql_types::BigInt;
/// use diesel_async::RunQueryDsl;
/// use tidewater_diesel::{RetryPolicy, transaction};
///
/// #[derive(diesel::QueryableByName)]
/// struct Balance {
///     #[diesel(sql_type = BigInt)]
///     balance: i64,
/// }
///
/// let moved = transaction(&pool, RetryPolicy::default(), async |conn| {
///     let row: Balance = diesel::sql_query("SELECT balance FROM accounts WHERE id = 1 FOR UPDATE")
///         .get_result(conn)
///         .await?;
///     if row.balance < 10 {
///         return Err(AppError::Funds); // rolled back
///     }
///     diesel::sql_query("UPDATE accounts SET balance = balance - 10 WHERE id = 1").execute(conn).await?;
///     diesel::sql_query("UPDATE accounts SET balance = balance + 10 WHERE id = 2").execute(conn).await?;
///     Ok(10)
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn transaction<C, T, E, F>(
    pool: &Pool<DieselManager<C>>,
    policy: RetryPolicy,
    mut body: F,
) -> Result<T, E>
where
    C: Driver,
    F: AsyncFnMut(&mut C) -> Result<T, E>,
    E: From<tidewater::Error> + From<diesel::result::Error> + std::error::Error + 'static,
{
    let mut attempt = 1;
    loop {
        let mut guard = pool.get().await?;
        let conn: &mut C = &mut guard;
        let outcome = async {
            C::TransactionManager::begin_transaction(conn).await?;
            match body(conn).await {
                Ok(value) => {
                    C::TransactionManager::commit_transaction(conn).await?;
                    Ok(value)
                }
                Err(error) => match C::TransactionManager::rollback_transaction(conn).await {
                    Ok(()) | Err(diesel::result::Error::BrokenTransactionManager) => Err(error),
                    Err(rollback) => Err(rollback.into()),
                },
            }
        }
        .await;
        match outcome {
            Err(error) if attempt < policy.max_attempts && is_conflict(&error) => {
                drop(guard);
                tracing::debug!(attempt, %error, "transaction conflict; retrying");
                tokio::time::sleep(policy.backoff.delay(attempt)).await;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}
