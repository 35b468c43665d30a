//! The [`Manager`] over diesel-async connections, its settings, and the
//! connection the pool hands out.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::Arc;

use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::PoolableConnection;
use tidewater::credentials::CredentialsProvider;
use tidewater::{ConfigError, ErrorClass, Manager, Pool, PoolConfig};

use crate::driver::Driver;
use crate::error::DieselError;
use tidewater_postgres::TransactionStatus;

/// A future a setup callback returns.
pub type SetupFuture<'a> = Pin<Box<dyn Future<Output = QueryResult<()>> + Send + 'a>>;

type SetupFn<C> = dyn for<'a> Fn(&'a mut C) -> SetupFuture<'a> + Send + Sync;

/// How a connection is checked when the pool validates it (on checkout
/// after `validate_after` idle, and by keepalive).
///
/// ```
/// use tidewater_diesel::Validation;
/// assert_eq!(Validation::default(), Validation::Ping);
/// let custom = Validation::Query("SELECT 1 FROM accounts LIMIT 1".into());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Validation {
    /// The cheapest round trip: an empty query on PostgreSQL, `DO 1` on
    /// MySQL/MariaDB, `SELECT 1` on SQLite (diesel-async's
    /// `RecyclingMethod::Verified` runs a prepared `SELECT 1`).
    #[default]
    Ping,
    /// A statement of yours, like `RecyclingMethod::CustomQuery`.
    Query(Cow<'static, str>),
}

/// What a PostgreSQL session gets before its next use.
///
/// ```
/// use tidewater_diesel::SessionReset;
/// assert_eq!(SessionReset::default(), SessionReset::Rollback);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SessionReset {
    /// Roll back a transaction left open (or failed), when the session's
    /// transaction status says there is one; nothing otherwise.
    #[default]
    Rollback,
    /// Also, before every reuse, what `DISCARD ALL` does but dropping
    /// prepared statements (diesel-async's statement cache refers to
    /// them): `CLOSE ALL`, `SET SESSION AUTHORIZATION DEFAULT`,
    /// `RESET ALL`, `UNLISTEN *`, advisory locks released, `DISCARD PLANS,
    /// TEMP, SEQUENCES`; then diesel-async's session settings and the
    /// manager's setup SQL run again. One round trip per checkout.
    Full,
}

/// Opens and looks after diesel-async connections for a
/// [`tidewater::Pool`]. Cheap to clone.
///
/// Use it through its aliases [`PgManager`], [`MysqlManager`],
/// [`MariadbManager`], [`SqliteManager`]. The `with_*` settings apply to
/// the manager they are called on (a clone configured afterwards is a
/// separate manager).
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use diesel::sql_types::BigInt;
/// use diesel_async::{AsyncConnection, RunQueryDsl};
/// use tidewater::{Pool, PoolConfig};
/// use tidewater_diesel::PgManager;
///
/// #[derive(diesel::QueryableByName)]
/// struct Count {
///     #[diesel(sql_type = BigInt)]
///     n: i64,
/// }
///
/// let manager = PgManager::new("postgres://postgres@127.0.0.1/test")?
///     .with_setup_sql(["SET search_path TO app, public"]);
/// let pool = Pool::new(manager, PoolConfig::default())?;
///
/// let mut conn = pool.get().await?;
/// let count: Count = diesel::sql_query("SELECT count(*) AS n FROM pg_class")
///     .get_result(&mut *conn)
///     .await?;
/// let moved = conn
///     .transaction::<_, diesel::result::Error, _>(async |tx| {
///         diesel::sql_query("UPDATE accounts SET balance = balance - 10 WHERE id = 1")
///             .execute(tx)
///             .await
///     })
///     .await?;
/// # Ok(()) }
/// ```
pub struct DieselManager<C: Driver> {
    inner: Arc<Inner<C>>,
}

struct Inner<C: Driver> {
    url: String,
    target: C::Target,
    setup_sql: Vec<String>,
    setup: Option<Arc<SetupFn<C>>>,
    reset_sql: Vec<String>,
    credentials: Option<CredentialsProvider>,
    validation: Validation,
    session_reset: SessionReset,
}

impl<C: Driver> Clone for Inner<C> {
    fn clone(&self) -> Self {
        Self {
            url: self.url.clone(),
            target: self.target.clone(),
            setup_sql: self.setup_sql.clone(),
            setup: self.setup.clone(),
            reset_sql: self.reset_sql.clone(),
            credentials: self.credentials.clone(),
            validation: self.validation.clone(),
            session_reset: self.session_reset,
        }
    }
}

impl<C: Driver> Clone for DieselManager<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

/// A manager of PostgreSQL connections ([`AsyncPgConnection`]).
///
/// ```
/// let manager = tidewater_diesel::PgManager::new("postgres://app:s3cret@db/orders").unwrap();
/// assert!(!format!("{manager:?}").contains("s3cret"));
/// ```
pub type PgManager = DieselManager<AsyncPgConnection>;

/// A manager of MySQL connections
/// ([`AsyncMysqlConnection`](diesel_async::AsyncMysqlConnection), diesel's
/// `Mysql` backend). URLs: `mysql://user:password@host:3306/database`.
///
/// ```
/// let manager = tidewater_diesel::MysqlManager::new("mysql://root@127.0.0.1:3306/test").unwrap();
/// ```
pub type MysqlManager = DieselManager<diesel_async::AsyncMysqlConnection>;

/// A manager of MariaDB connections
/// ([`AsyncMariadbConnection`](diesel_async::AsyncMariadbConnection),
/// diesel's `Mariadb` backend: `RETURNING` and MariaDB's error numbers).
/// URLs: `mariadb://` or `mysql://`.
///
/// ```
/// let manager = tidewater_diesel::MariadbManager::new("mariadb://root@127.0.0.1:3306/test").unwrap();
/// ```
pub type MariadbManager = DieselManager<diesel_async::AsyncMariadbConnection>;

/// A manager of SQLite connections (diesel's `SqliteConnection` in
/// diesel-async's
/// [`SyncConnectionWrapper`](diesel_async::sync_connection_wrapper::SyncConnectionWrapper),
/// calls on Tokio's blocking pool; SQLite compiled in). Each connection
/// gets `PRAGMA busy_timeout = 5000`. `":memory:"` gives each connection
/// a database of its own: use a file to share one.
///
/// ```
/// let manager = tidewater_diesel::SqliteManager::new("app.db").unwrap();
/// ```
pub type SqliteManager = DieselManager<
    diesel_async::sync_connection_wrapper::SyncConnectionWrapper<diesel::SqliteConnection>,
>;

impl<C: Driver> DieselManager<C> {
    /// Checks `url` and prepares to connect; opens nothing yet.
    ///
    /// # Errors
    /// [`DieselError::Config`] naming what is wrong (password redacted).
    ///
    /// ```
    /// use tidewater_diesel::{MysqlManager, PgManager};
    /// let error = PgManager::new("postgres://app:s3cret@db:notaport/x").unwrap_err();
    /// assert!(error.to_string().starts_with("invalid configuration"), "{error}");
    /// assert!(!error.to_string().contains("s3cret"));
    /// let error = MysqlManager::new("postgres://db/x").unwrap_err();
    /// assert!(error.to_string().contains("expected mysql://"), "{error}");
    /// let error = MysqlManager::new("mysql://db/x?pool_max=50").unwrap_err();
    /// assert!(error.to_string().contains("tidewater is the pool"), "{error}");
    /// ```
    pub fn new(url: impl Into<String>) -> Result<Self, DieselError> {
        let url = url.into();
        let target = C::parse(&url)?;
        Ok(Self {
            inner: Arc::new(Inner {
                url,
                target,
                setup_sql: Vec::new(),
                setup: None,
                reset_sql: Vec::new(),
                credentials: None,
                validation: Validation::Ping,
                session_reset: SessionReset::Rollback,
            }),
        })
    }

    fn inner_mut(&mut self) -> &mut Inner<C> {
        Arc::make_mut(&mut self.inner)
    }

    /// Statements run, in order, on each new connection (after diesel's
    /// own session settings). A failure is a connection error, classified
    /// like any other (a syntax error is permanent).
    ///
    /// ```
    /// let manager = tidewater_diesel::PgManager::new("postgres://db/orders").unwrap()
    ///     .with_setup_sql(["SET search_path TO orders", "SET statement_timeout = '5s'"]);
    /// ```
    #[must_use]
    pub fn with_setup_sql<I, S>(mut self, statements: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.inner_mut()
            .setup_sql
            .extend(statements.into_iter().map(Into::into));
        self
    }

    /// A callback run on each new connection after the setup SQL, like
    /// diesel-async's `ManagerConfig::custom_setup` (which builds the
    /// connection; this one sets it up). An error is a connection error.
    ///
    /// ```
    /// use diesel_async::RunQueryDsl;
    /// let manager = tidewater_diesel::PgManager::new("postgres://db/orders").unwrap()
    ///     .with_setup(|conn| Box::pin(async move {
    ///         diesel::sql_query("SET application_name = 'billing'").execute(conn).await?;
    ///         Ok(())
    ///     }));
    /// ```
    #[must_use]
    pub fn with_setup<F>(mut self, setup: F) -> Self
    where
        F: for<'a> Fn(&'a mut C) -> SetupFuture<'a> + Send + Sync + 'static,
    {
        self.inner_mut().setup = Some(Arc::new(setup));
        self
    }

    /// Statements run before every reuse of a connection, after the
    /// rollback of an open transaction: session state your application
    /// changes (`SET @cart = NULL` on MySQL, `RESET search_path` on
    /// PostgreSQL). One round trip per checkout.
    ///
    /// ```
    /// let manager = tidewater_diesel::MysqlManager::new("mysql://db/shop").unwrap()
    ///     .with_reset_sql(["SET @cart = NULL"]);
    /// ```
    #[must_use]
    pub fn with_reset_sql<I, S>(mut self, statements: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.inner_mut()
            .reset_sql
            .extend(statements.into_iter().map(Into::into));
        self
    }

    /// How [`validate`](Manager::validate) checks a connection.
    ///
    /// ```
    /// use tidewater_diesel::{PgManager, Validation};
    /// let manager = PgManager::new("postgres://db/orders").unwrap()
    ///     .with_validation(Validation::Query("SELECT 1".into()));
    /// ```
    #[must_use]
    pub fn with_validation(mut self, validation: Validation) -> Self {
        self.inner_mut().validation = validation;
        self
    }

    /// Where the password (and maybe the user) of each new connection
    /// comes from: a rotating secret, a cloud IAM token. It replaces the
    /// URL's; the connections already open are not touched. A provider
    /// failure is a transient connection error that says so. Not for
    /// SQLite (ignored there: SQLite has no users).
    ///
    /// ```
    /// use tidewater::credentials::{Credentials, CredentialsProvider};
    /// let provider = CredentialsProvider::new(|| async { Ok(Credentials::password("token-4711")) });
    /// let manager = tidewater_diesel::PgManager::new("postgres://app@db/orders").unwrap()
    ///     .with_credentials(provider);
    /// ```
    #[must_use]
    pub fn with_credentials(mut self, provider: CredentialsProvider) -> Self {
        self.inner_mut().credentials = Some(provider);
        self
    }

    /// The URL it connects to, password redacted.
    ///
    /// ```
    /// let manager = tidewater_diesel::PgManager::new("postgres://app:s3cret@db/orders").unwrap();
    /// assert_eq!(manager.url(), "postgres://app:***@db/orders");
    /// ```
    pub fn url(&self) -> String {
        crate::redact(&self.inner.url)
    }

    /// Builds a pool over this manager.
    ///
    /// # Errors
    /// A pool configuration key out of range.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = tidewater_diesel::SqliteManager::new(":memory:").unwrap()
    ///     .into_pool(tidewater::PoolConfig::default())
    ///     .unwrap();
    /// # }
    /// ```
    pub fn into_pool(self, config: PoolConfig) -> Result<Pool<Self>, ConfigError> {
        Pool::new(self, config)
    }

    async fn setup(&self, conn: &mut C) -> Result<(), DieselError> {
        for statement in &self.inner.setup_sql {
            conn.batch_execute(statement).await?;
        }
        if let Some(setup) = &self.inner.setup {
            setup(conn).await?;
        }
        Ok(())
    }
}

impl DieselManager<AsyncPgConnection> {
    /// What a session gets before its next use (PostgreSQL only; on
    /// MySQL/MariaDB diesel-async gives no way to `COM_RESET_CONNECTION`,
    /// so name the state to clear with
    /// [`with_reset_sql`](DieselManager::with_reset_sql)).
    ///
    /// ```
    /// use tidewater_diesel::{PgManager, SessionReset};
    /// let manager = PgManager::new("postgres://db/orders").unwrap().with_session_reset(SessionReset::Full);
    /// ```
    #[must_use]
    pub fn with_session_reset(mut self, reset: SessionReset) -> Self {
        self.inner_mut().session_reset = reset;
        self
    }
}

impl<C: Driver> fmt::Debug for DieselManager<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DieselManager")
            .field("database", &C::DATABASE)
            .field("url", &self.url())
            .field("setup_sql", &self.inner.setup_sql)
            .field("setup", &self.inner.setup.as_ref().map(|_| ".."))
            .field("reset_sql", &self.inner.reset_sql)
            .field("credentials", &self.inner.credentials)
            .field("validation", &self.inner.validation)
            .field("session_reset", &self.inner.session_reset)
            .finish()
    }
}

/// A diesel-async connection in the pool. Derefs to the connection, and
/// is one itself (diesel-async implements its traits for anything that
/// derefs to a connection), so queries take `&mut *conn` or `&mut conn`
/// alike, whether `conn` is this or the pool's guard.
///
/// ```no_run
/// # async fn run(pool: tidewater::Pool<tidewater_diesel::PgManager>) -> Result<(), Box<dyn std::error::Error>> {
/// use diesel_async::RunQueryDsl;
/// let mut conn = pool.get().await?;
/// diesel::sql_query("UPDATE jobs SET done = true WHERE id = 7").execute(&mut *conn).await?;
/// diesel::sql_query("UPDATE jobs SET done = true WHERE id = 8").execute(&mut conn).await?;
/// # Ok(()) }
/// ```
pub struct DieselConnection<C: Driver> {
    conn: C,
    extra: C::Extra,
}

impl<C: Driver> DieselConnection<C> {
    /// The diesel-async connection.
    pub fn get_mut(&mut self) -> &mut C {
        &mut self.conn
    }
}

impl DieselConnection<AsyncPgConnection> {
    /// The session's transaction status, read off the wire from the
    /// server's last answer (no round trip).
    ///
    /// ```no_run
    /// # async fn run(pool: tidewater::Pool<tidewater_diesel::PgManager>) -> Result<(), Box<dyn std::error::Error>> {
    /// use diesel_async::SimpleAsyncConnection;
    /// use tidewater_diesel::TransactionStatus;
    /// let mut conn = pool.get().await?;
    /// conn.batch_execute("BEGIN").await?;
    /// assert_eq!(conn.transaction_status(), TransactionStatus::InTransaction);
    /// # Ok(()) }
    /// ```
    pub fn transaction_status(&self) -> TransactionStatus {
        self.extra.transaction_status()
    }
}

impl<C: Driver> Deref for DieselConnection<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.conn
    }
}

impl<C: Driver> DerefMut for DieselConnection<C> {
    fn deref_mut(&mut self) -> &mut C {
        &mut self.conn
    }
}

impl<C: Driver> fmt::Debug for DieselConnection<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DieselConnection")
            .field("database", &C::DATABASE)
            .finish_non_exhaustive()
    }
}

impl<C: Driver> Manager for DieselManager<C> {
    type Connection = DieselConnection<C>;
    type Error = DieselError;

    async fn connect(&self) -> Result<DieselConnection<C>, DieselError> {
        let credentials = match &self.inner.credentials {
            Some(provider) if C::CREDENTIALS => {
                Some(provider.fetch().await.map_err(DieselError::Credentials)?)
            }
            _ => None,
        };
        let (mut conn, extra) = C::open(&self.inner.target, credentials.as_ref()).await?;
        self.setup(&mut conn).await?;
        Ok(DieselConnection { conn, extra })
    }

    async fn validate(&self, conn: &mut DieselConnection<C>) -> Result<(), DieselError> {
        match &self.inner.validation {
            Validation::Ping => <C as crate::driver::sealed::Open>::check(&mut conn.conn).await?,
            Validation::Query(sql) => conn.conn.batch_execute(sql).await?,
        }
        Ok(())
    }

    /// The socket is gone, or diesel-async's transaction manager says the
    /// connection is beyond use: a transaction statement (`BEGIN`,
    /// `COMMIT`, `ROLLBACK`) was cut off mid-way, the manager is in its
    /// error state, or a diesel transaction is still open (the future of
    /// `conn.transaction(..)` was dropped, or its body panicked). This is
    /// diesel-async's own `PoolableConnection::is_broken`, which adds the
    /// driver's closed (PostgreSQL) or disconnected (MySQL: also set while
    /// a command's answer is pending, so a cancelled query discards the
    /// connection) flag. Such a connection is discarded: its transaction
    /// manager's state cannot be repaired from outside.
    fn is_broken(&self, conn: &mut DieselConnection<C>) -> bool {
        C::is_closed(&mut conn.conn, &conn.extra) || PoolableConnection::is_broken(&mut conn.conn)
    }

    /// PostgreSQL: the transaction status the server reported with its
    /// last answer (read off the socket) is not idle, or an answer is
    /// still pending; MySQL/MariaDB and SQLite: always (diesel-async hides
    /// the driver state that would tell). Also when a full reset or
    /// reset SQL is configured.
    fn needs_reset(&self, conn: &mut DieselConnection<C>) -> bool {
        C::may_be_dirty(&mut conn.conn, &conn.extra)
            || self.inner.session_reset == SessionReset::Full
            || !self.inner.reset_sql.is_empty()
    }

    async fn reset(&self, conn: &mut DieselConnection<C>) -> Result<(), DieselError> {
        if C::may_be_dirty(&mut conn.conn, &conn.extra) {
            C::rollback(&mut conn.conn).await?;
        }
        if self.inner.session_reset == SessionReset::Full {
            conn.conn.batch_execute(crate::pg::FULL_RESET).await?;
            for statement in &self.inner.setup_sql {
                conn.conn.batch_execute(statement).await?;
            }
        }
        for statement in &self.inner.reset_sql {
            conn.conn.batch_execute(statement).await?;
        }
        Ok(())
    }

    fn classify(&self, error: &DieselError) -> ErrorClass {
        error.class()
    }
}
