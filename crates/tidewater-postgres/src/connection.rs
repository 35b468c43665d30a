//! A pooled PostgreSQL session: the driver's `Client`, its transaction
//! status, and queries bounded by the statement timeout.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row, SimpleQueryMessage, ToStatement};

use crate::connect::Opened;
use crate::error::PgError;
use crate::tap::TransactionStatus;

/// How long, after sending a cancel request, a query may take to stop
/// before its connection is given up.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// A PostgreSQL session from the pool. Derefs to
/// [`tokio_postgres::Client`]; its own query methods (same names) are
/// bounded by the statement timeout.
///
/// ```no_run
/// # async fn run(pool: tidewater::Pool<tidewater_postgres::PgManager>) -> Result<(), Box<dyn std::error::Error>> {
/// let conn = pool.get().await?;
/// let row = conn.query_one("SELECT $1::int + 1", &[&41]).await?; // cancelled on the server if it hangs
/// assert_eq!(row.get::<_, i32>(0), 42);
/// # Ok(())
/// # }
/// ```
pub struct PgConnection {
    opened: Opened,
    statement_timeout: Option<Duration>,
    pooler: bool,
    /// Set when a cancelled query did not stop: the pool discards it.
    broken: AtomicBool,
}

impl PgConnection {
    pub(crate) fn new(opened: Opened, statement_timeout: Option<Duration>, pooler: bool) -> Self {
        Self {
            opened,
            statement_timeout,
            pooler,
            broken: AtomicBool::new(false),
        }
    }

    /// The driver's client, for anything the bounded methods do not cover.
    pub fn client(&self) -> &Client {
        &self.opened.client
    }

    /// The session's transaction status, as of the server's last answer.
    pub fn transaction_status(&self) -> TransactionStatus {
        self.opened.status.get()
    }

    /// Whether the session can no longer be used.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Relaxed) || self.opened.client.is_closed()
    }

    /// Asks the server to cancel the query running on this session.
    ///
    /// # Errors
    /// When the server cannot be reached.
    pub async fn cancel(&self) -> Result<(), PgError> {
        self.opened.cancel.cancel().await
    }

    /// Runs `query` (a future on this session) within the statement timeout.
    /// When it runs out, a cancel request stops the query on the server and
    /// the session stays usable; if the server does not stop it within a
    /// few seconds, the session is marked broken and the pool discards it.
    ///
    /// # Errors
    /// [`PgError::QueryTimeout`], or the query's own error.
    pub async fn bounded<T>(
        &self,
        query: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, PgError> {
        let Some(limit) = self.statement_timeout else {
            return Ok(query.await?);
        };
        let mut query = std::pin::pin!(query);
        if let Ok(result) = tokio::time::timeout(limit, query.as_mut()).await {
            return Ok(result?);
        }
        tracing::warn!(statement_timeout = ?limit, "query outlived the statement timeout; cancelling it on the server");
        let stopped = tokio::time::timeout(CANCEL_GRACE, async {
            if let Err(error) = self.cancel().await {
                tracing::warn!(%error, "cancel request failed");
                return false;
            }
            let _ = query.await; // ends with SQLSTATE 57014, query cancelled
            true
        })
        .await
        .unwrap_or(false);
        if !stopped {
            self.broken.store(true, Relaxed);
        }
        Err(PgError::QueryTimeout {
            after: limit,
            connection_kept: stopped,
        })
    }

    /// Bounded [`Client::query`]. Behind a transaction pooler, outside a
    /// transaction, it runs in one of its own (named statements must not
    /// outlive a transaction there).
    ///
    /// # Errors
    /// As [`bounded`](Self::bounded).
    pub async fn query<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, PgError>
    where
        T: ?Sized + ToStatement,
    {
        self.pooler_safe(self.client().query(statement, params))
            .await
    }

    /// Bounded [`Client::query_one`].
    ///
    /// # Errors
    /// As [`bounded`](Self::bounded).
    pub async fn query_one<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, PgError>
    where
        T: ?Sized + ToStatement,
    {
        self.pooler_safe(self.client().query_one(statement, params))
            .await
    }

    /// Bounded [`Client::query_opt`].
    ///
    /// # Errors
    /// As [`bounded`](Self::bounded).
    pub async fn query_opt<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, PgError>
    where
        T: ?Sized + ToStatement,
    {
        self.pooler_safe(self.client().query_opt(statement, params))
            .await
    }

    /// Bounded [`Client::execute`].
    ///
    /// # Errors
    /// As [`bounded`](Self::bounded).
    pub async fn execute<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, PgError>
    where
        T: ?Sized + ToStatement,
    {
        self.pooler_safe(self.client().execute(statement, params))
            .await
    }

    /// Bounded [`Client::query_typed`]: one round trip, no named statement,
    /// so it suits transaction poolers best.
    ///
    /// # Errors
    /// As [`bounded`](Self::bounded).
    pub async fn query_typed(
        &self,
        statement: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>, PgError> {
        self.bounded(self.client().query_typed(statement, params))
            .await
    }

    /// Bounded [`Client::simple_query`].
    ///
    /// # Errors
    /// As [`bounded`](Self::bounded).
    pub async fn simple_query(&self, sql: &str) -> Result<Vec<SimpleQueryMessage>, PgError> {
        self.bounded(self.client().simple_query(sql)).await
    }

    /// Bounded [`Client::batch_execute`].
    ///
    /// # Errors
    /// As [`bounded`](Self::bounded).
    pub async fn batch_execute(&self, sql: &str) -> Result<(), PgError> {
        self.bounded(self.client().batch_execute(sql)).await
    }

    /// Behind a transaction pooler, a statement that prepares a named
    /// statement runs inside a transaction when none is open.
    async fn pooler_safe<T>(
        &self,
        query: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, PgError> {
        if !self.pooler || !self.transaction_status().is_clean() {
            return self.bounded(query).await;
        }
        self.bounded(self.client().batch_execute("BEGIN")).await?;
        let result = self.bounded(query).await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = self.bounded(self.client().batch_execute(end)).await;
        let value = result?;
        ended?;
        Ok(value)
    }
}

impl Deref for PgConnection {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.opened.client
    }
}

impl DerefMut for PgConnection {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.opened.client
    }
}

impl std::fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConnection")
            .field("transaction_status", &self.transaction_status())
            .field("broken", &self.is_broken())
            .finish_non_exhaustive()
    }
}
