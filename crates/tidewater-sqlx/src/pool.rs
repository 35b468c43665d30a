//! sqlx's `Acquire` for a tidewater pool.

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;

use tidewater::{Pool, PooledConnection};

use crate::backend::Backend;
use crate::manager::SqlxManager;

/// A tidewater pool of sqlx connections that implements [`sqlx::Acquire`],
/// for code written against sqlx's pool (`impl Acquire<'_, Database = Postgres>`).
///
/// Rust's coherence rules forbid implementing sqlx's (foreign) trait for
/// `&tidewater::Pool<_>` (a foreign type, whatever its parameter) in this
/// crate, hence this newtype. It derefs to the [`Pool`], so everything else
/// is the pool's own API.
///
/// [`Acquire::acquire`](sqlx::Acquire::acquire) returns a pooled
/// connection. [`Acquire::begin`](sqlx::Acquire::begin) cannot: sqlx's
/// `Transaction` only owns connections of sqlx's own pool, so it returns an
/// error telling to `acquire()` first and `begin()` on the connection (or
/// to use [`transaction`](crate::transaction)).
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use sqlx::{Acquire, Connection, Postgres};
/// use tidewater_sqlx::{SqlxManager, SqlxPool};
///
/// async fn count_orders<'a>(db: impl Acquire<'a, Database = Postgres>) -> sqlx::Result<i64> {
///     let mut conn = db.acquire().await?;
///     sqlx::query_scalar("SELECT count(*) FROM orders").fetch_one(&mut *conn).await
/// }
///
/// let pool: SqlxPool<Postgres> = SqlxManager::from_url("postgres://app@localhost/shop")?
///     .into_pool(Default::default())?
///     .into();
/// let orders = count_orders(&pool).await?;
/// let mut conn = pool.get().await?; // the tidewater pool's own API
/// let mut tx = Connection::begin(&mut *conn).await?; // `Acquire` is in scope too
/// tx.commit().await?;
/// # Ok(()) }
/// ```
pub struct SqlxPool<DB: Backend>(Pool<SqlxManager<DB>>);

impl<DB: Backend> SqlxPool<DB> {
    /// The tidewater pool.
    ///
    /// ```no_run
    /// # fn f(pool: tidewater_sqlx::SqlxPool<sqlx::Sqlite>) {
    /// println!("{}", pool.pool().status());
    /// # }
    /// ```
    pub fn pool(&self) -> &Pool<SqlxManager<DB>> {
        &self.0
    }

    /// The tidewater pool, unwrapped.
    ///
    /// ```no_run
    /// # fn f(pool: tidewater_sqlx::SqlxPool<sqlx::Sqlite>) {
    /// let pool: tidewater::Pool<_> = pool.into_inner();
    /// # }
    /// ```
    pub fn into_inner(self) -> Pool<SqlxManager<DB>> {
        self.0
    }
}

impl<DB: Backend> Clone for SqlxPool<DB> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<DB: Backend> std::fmt::Debug for SqlxPool<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SqlxPool").field(&self.0.status()).finish()
    }
}

impl<DB: Backend> From<Pool<SqlxManager<DB>>> for SqlxPool<DB> {
    fn from(pool: Pool<SqlxManager<DB>>) -> Self {
        Self(pool)
    }
}

impl<DB: Backend> Deref for SqlxPool<DB> {
    type Target = Pool<SqlxManager<DB>>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl<'c, DB: Backend> sqlx::Acquire<'c> for &'c SqlxPool<DB> {
    type Database = DB;
    type Connection = PooledConnection<SqlxManager<DB>>;

    fn acquire(self) -> BoxFuture<'c, Result<Self::Connection, sqlx::Error>> {
        Box::pin(async move { self.0.get().await.map_err(into_sqlx) })
    }

    fn begin(self) -> BoxFuture<'c, Result<sqlx::Transaction<'c, DB>, sqlx::Error>> {
        Box::pin(std::future::ready(Err(sqlx::Error::Configuration(
            "a tidewater pool cannot begin a transaction that owns its connection \
             (sqlx::Transaction only owns sqlx's own pool connections): \
             call acquire() and then begin() on the connection, \
             or use tidewater_sqlx::transaction"
                .into(),
        ))))
    }
}

/// A pool error as sqlx's: `PoolClosed` for a closed pool; otherwise the
/// tidewater error itself, kept whole (timeout with its last connection
/// error, breaker open...) behind `AnyDriverError`.
fn into_sqlx(error: tidewater::Error) -> sqlx::Error {
    match error {
        tidewater::Error::Closed { .. } => sqlx::Error::PoolClosed,
        error => sqlx::Error::AnyDriverError(Box::new(error)),
    }
}
