//! A pooled PostgreSQL session: the driver's `Client`, its transaction
//! status, and queries bounded by the statement timeout.

use std::collections::HashMap;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row, SimpleQueryMessage, Statement};

use crate::connect::{Opened, SessionWatch};
use crate::error::PgError;
use crate::tap::TransactionStatus;

/// How long, after sending a cancel request, a query may take to stop
/// before its connection is given up.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// Statements a session keeps prepared; past this the cache starts over.
const STATEMENT_CACHE: usize = 256;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

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
    // Boxed: the pool moves a connection at every checkout and return, and
    // a pointer moves faster than the session's few hundred bytes.
    inner: Box<Inner>,
}

struct Inner {
    client: Client,
    watch: SessionWatch,
    statement_timeout: Option<Duration>,
    pooler: bool,
    /// Set when a cancelled query did not stop: the pool discards it.
    broken: AtomicBool,
    /// Statements prepared on this session, by their SQL (none behind a
    /// transaction pooler, where named statements must not outlive a
    /// transaction).
    statements: Mutex<HashMap<Box<str>, Statement>>,
}

impl PgConnection {
    pub(crate) fn new(opened: Opened, statement_timeout: Option<Duration>, pooler: bool) -> Self {
        let (client, watch) = opened;
        let inner = Inner {
            client,
            watch,
            statement_timeout,
            pooler,
            broken: AtomicBool::new(false),
            statements: Mutex::default(),
        };
        Self {
            inner: Box::new(inner),
        }
    }

    /// The driver's client, for anything the bounded methods do not cover.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The session's transaction status, as of the server's last answer.
    pub fn transaction_status(&self) -> TransactionStatus {
        self.inner.watch.transaction_status()
    }

    /// Whether the session can no longer be used.
    pub fn is_broken(&self) -> bool {
        self.inner.broken.load(Relaxed) || self.inner.client.is_closed()
    }

    /// Asks the server to cancel the query running on this session.
    ///
    /// # Errors
    /// When the server cannot be reached.
    pub async fn cancel(&self) -> Result<(), PgError> {
        self.inner.watch.cancel().await
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
        let Some(limit) = self.inner.statement_timeout else {
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
            self.inner.broken.store(true, Relaxed);
        }
        Err(PgError::QueryTimeout {
            after: limit,
            connection_kept: stopped,
        })
    }

    /// Bounded [`Client::query`], on a statement prepared once per session
    /// and cached (one round trip a query after the first). Behind a
    /// transaction pooler nothing is cached, and outside a transaction the
    /// statement runs in one of its own.
    ///
    /// # Errors
    /// As [`bounded`](Self::bounded).
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, PgError> {
        match self.cached(sql).await? {
            Some(statement) => self.bounded(self.client().query(&statement, params)).await,
            None => self.pooler_safe(self.client().query(sql, params)).await,
        }
    }

    /// Bounded [`Client::query_one`], on a cached statement like [`query`](Self::query).
    ///
    /// # Errors
    /// As [`bounded`](Self::bounded).
    pub async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, PgError> {
        match self.cached(sql).await? {
            Some(statement) => {
                self.bounded(self.client().query_one(&statement, params))
                    .await
            }
            None => self.pooler_safe(self.client().query_one(sql, params)).await,
        }
    }

    /// Bounded [`Client::query_opt`], on a cached statement like [`query`](Self::query).
    ///
    /// # Errors
    /// As [`bounded`](Self::bounded).
    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, PgError> {
        match self.cached(sql).await? {
            Some(statement) => {
                self.bounded(self.client().query_opt(&statement, params))
                    .await
            }
            None => self.pooler_safe(self.client().query_opt(sql, params)).await,
        }
    }

    /// Bounded [`Client::execute`], on a cached statement like [`query`](Self::query).
    ///
    /// # Errors
    /// As [`bounded`](Self::bounded).
    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, PgError> {
        match self.cached(sql).await? {
            Some(statement) => {
                self.bounded(self.client().execute(&statement, params))
                    .await
            }
            None => self.pooler_safe(self.client().execute(sql, params)).await,
        }
    }

    /// The session's prepared statement for `sql`, preparing it the first
    /// time; `None` behind a transaction pooler.
    async fn cached(&self, sql: &str) -> Result<Option<Statement>, PgError> {
        if self.inner.pooler {
            return Ok(None);
        }
        if let Some(statement) = lock(&self.inner.statements).get(sql) {
            return Ok(Some(statement.clone()));
        }
        let statement = self.bounded(self.client().prepare(sql)).await?;
        let mut statements = lock(&self.inner.statements);
        if statements.len() >= STATEMENT_CACHE {
            statements.clear(); // dropping them closes them on the server
        }
        statements.insert(sql.into(), statement.clone());
        Ok(Some(statement))
    }

    /// Forgets the cached statements (after `DISCARD ALL` removed them on
    /// the server).
    pub(crate) fn forget_statements(&mut self) {
        lock(&self.inner.statements).clear();
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
        if !self.inner.pooler || !self.transaction_status().is_clean() {
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
        &self.inner.client
    }
}

impl DerefMut for PgConnection {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.inner.client
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
