//! The [`Manager`] over sqlx connections, and its settings.

use std::fmt;
use std::str::FromStr;

use sqlx::{ConnectOptions, Connection};
use tidewater::credentials::CredentialsProvider;
use tidewater::{ConfigError, ErrorClass, Manager, Pool, PoolConfig};

use crate::backend::{Backend, Options};
use crate::error::SqlxError;

/// What a connection's session gets before its next use. Either way sqlx's
/// own hygiene comes first: the `ROLLBACK` a dropped `sqlx::Transaction`
/// queued is sent and the answers a cancelled query still owed are read.
///
/// ```
/// use tidewater_sqlx::SessionReset;
/// assert_eq!(SessionReset::default(), SessionReset::Rollback);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionReset {
    /// Roll back a transaction left open (sqlx's or a raw `BEGIN`), or a
    /// failed one; then the reset SQL, if any.
    #[default]
    Rollback,
    /// Also clear the session. PostgreSQL: what `DISCARD ALL` clears
    /// except prepared statements (sqlx caches them), then the setup SQL
    /// again; SQLite: temporary tables and views are dropped; MySQL: sqlx
    /// offers no `COM_RESET_CONNECTION`, so only the reset SQL. Then the
    /// reset SQL.
    Full,
    /// Only what sqlx tracks itself, at no round trip: the rollback a
    /// dropped `sqlx::Transaction` queued and the answers a cancelled query
    /// still owes are dealt with by sqlx before the next caller's first
    /// query, so a clean connection is handed over as it is. A raw `BEGIN`
    /// left open reaches the next caller, as it does with sqlx's own pool;
    /// the reset SQL, if any, still runs before each reuse. For services
    /// that only open transactions through sqlx (`begin()`, the
    /// [`transaction`](crate::transaction) helper) and want the round trip
    /// back.
    ///
    /// ```
    /// use sqlx::Postgres;
    /// use tidewater_sqlx::{SessionReset, SqlxManager};
    /// let manager = SqlxManager::<Postgres>::from_url("postgres://localhost/app")?
    ///     .with_session_reset(SessionReset::Tracked);
    /// # Ok::<(), tidewater_sqlx::SqlxError>(())
    /// ```
    Tracked,
}

/// Opens, checks and resets sqlx connections for a [`tidewater::Pool`]:
/// `SqlxManager<Postgres>` for `PgConnection`, `SqlxManager<MySql>` for
/// `MySqlConnection`, `SqlxManager<Sqlite>` for `SqliteConnection`.
///
/// | | what it does |
/// |---|---|
/// | [`connect`](Manager::connect) | credentials from the provider, if any; sqlx's `connect_with`; the setup SQL |
/// | [`validate`](Manager::validate) | sqlx's `ping()` |
/// | [`is_broken`](Manager::is_broken) | sqlx still counts a transaction open (a `Transaction` leaked with `mem::forget`): its bookkeeping can no longer match the server's |
/// | [`needs_reset`](Manager::needs_reset) | always, after use (sqlx exposes no synchronous sign of a cancelled query or of a raw `BEGIN`), but with [`SessionReset::Tracked`] and no reset SQL |
/// | [`reset`](Manager::reset) | one round trip, see [`SessionReset`] |
/// | [`classify`](Manager::classify) | [`classify`](crate::classify) |
///
/// The pool's [`PooledConnection`](tidewater::PooledConnection) derefs to
/// the sqlx connection, so queries run unchanged:
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use sqlx::{Connection, Postgres};
/// use tidewater::PoolConfig;
/// use tidewater_sqlx::SqlxManager;
///
/// let pool = SqlxManager::<Postgres>::from_url("postgres://app:secret@localhost/orders")?
///     .with_setup_sql(["SET search_path = orders, public"])
///     .into_pool(PoolConfig::default())?;
///
/// let mut conn = pool.get().await?;
/// let total: i64 = sqlx::query_scalar("SELECT count(*) FROM orders").fetch_one(&mut *conn).await?;
/// let (id, name): (i64, String) = sqlx::query_as("SELECT id, name FROM customers WHERE id = $1")
///     .bind(7_i64)
///     .fetch_one(&mut *conn)
///     .await?;
/// let mut tx = conn.begin().await?;
/// sqlx::query("UPDATE customers SET name = $1 WHERE id = $2").bind("Ada").bind(id).execute(&mut *tx).await?;
/// tx.commit().await?;
/// # Ok(()) }
/// ```
pub struct SqlxManager<DB: Backend> {
    options: Options<DB>,
    setup_sql: Vec<String>,
    reset_sql: Vec<String>,
    credentials: Option<CredentialsProvider>,
    session_reset: SessionReset,
}

impl<DB: Backend> Clone for SqlxManager<DB> {
    fn clone(&self) -> Self {
        Self {
            options: self.options.clone(),
            setup_sql: self.setup_sql.clone(),
            reset_sql: self.reset_sql.clone(),
            credentials: self.credentials.clone(),
            session_reset: self.session_reset,
        }
    }
}

impl<DB: Backend> SqlxManager<DB> {
    /// A manager that connects with sqlx connect options.
    ///
    /// ```
    /// use sqlx::sqlite::{Sqlite, SqliteConnectOptions};
    /// use tidewater_sqlx::SqlxManager;
    ///
    /// let options = SqliteConnectOptions::new().filename("app.db").create_if_missing(true);
    /// let manager = SqlxManager::<Sqlite>::new(options);
    /// assert!(format!("{manager:?}").contains("app.db"));
    /// ```
    pub fn new(options: Options<DB>) -> Self {
        Self {
            options,
            setup_sql: Vec::new(),
            reset_sql: Vec::new(),
            credentials: None,
            session_reset: SessionReset::default(),
        }
    }

    /// A manager that connects to `url` (sqlx's URL syntax for the
    /// database).
    ///
    /// # Errors
    /// [`SqlxError::Config`] when the URL is not one of this database's
    /// (its scheme) or sqlx cannot parse it; the message shows the URL with
    /// its password as `***`.
    ///
    /// ```
    /// use sqlx::{MySql, Postgres};
    /// use tidewater_sqlx::SqlxManager;
    ///
    /// assert!(SqlxManager::<Postgres>::from_url("postgres://app:secret@db/orders").is_ok());
    /// let error = SqlxManager::<MySql>::from_url("postgres://app:secret@db/orders").unwrap_err();
    /// assert_eq!(
    ///     error.to_string(),
    ///     "invalid sqlx configuration: `postgres://app:***@db/orders` is not a MySQL URL \
    ///      (its scheme is none of mysql, mariadb)"
    /// );
    /// ```
    pub fn from_url(url: &str) -> Result<Self, SqlxError> {
        let scheme = url.split_once(':').map(|(scheme, _)| scheme);
        if !scheme.is_some_and(|scheme| DB::URL_SCHEMES.contains(&scheme)) {
            return Err(SqlxError::Config(format!(
                "`{}` is not a {} URL (its scheme is none of {})",
                redact(url),
                DB::LABEL,
                DB::URL_SCHEMES.join(", ")
            )));
        }
        let options = Options::<DB>::from_str(url).map_err(|error| {
            SqlxError::Config(format!(
                "cannot parse {} URL `{}`: {}",
                DB::LABEL,
                redact(url),
                redact(&error.to_string())
            ))
        })?;
        Ok(Self::new(options))
    }

    /// Statements run on every new connection, in order, before the pool
    /// hands it out (`SET search_path ...`, `PRAGMA ...`). A failure is a
    /// connection error with the class of the database's error. With
    /// [`SessionReset::Full`] they run again after each reset.
    ///
    /// ```
    /// use sqlx::Postgres;
    /// let manager = tidewater_sqlx::SqlxManager::<Postgres>::from_url("postgres://localhost/app")?
    ///     .with_setup_sql(["SET search_path = app, public", "SET application_name = 'billing'"]);
    /// # Ok::<(), tidewater_sqlx::SqlxError>(())
    /// ```
    pub fn with_setup_sql<I, S>(mut self, statements: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.setup_sql = statements.into_iter().map(Into::into).collect();
        self
    }

    /// Statements run after each reset, before a used connection is handed
    /// out again (`SET @tenant = NULL`, `DISCARD TEMP`...), for session
    /// state the built-in reset does not know.
    ///
    /// ```
    /// use sqlx::MySql;
    /// let manager = tidewater_sqlx::SqlxManager::<MySql>::from_url("mysql://root@localhost/app")?
    ///     .with_reset_sql(["SET @tenant = NULL"]);
    /// # Ok::<(), tidewater_sqlx::SqlxError>(())
    /// ```
    pub fn with_reset_sql<I, S>(mut self, statements: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.reset_sql = statements.into_iter().map(Into::into).collect();
        self
    }

    /// What a session gets before its next use (default
    /// [`SessionReset::Rollback`]).
    ///
    /// ```
    /// use sqlx::Postgres;
    /// use tidewater_sqlx::{SessionReset, SqlxManager};
    /// let manager = SqlxManager::<Postgres>::from_url("postgres://localhost/app")?
    ///     .with_session_reset(SessionReset::Full);
    /// # Ok::<(), tidewater_sqlx::SqlxError>(())
    /// ```
    pub fn with_session_reset(mut self, reset: SessionReset) -> Self {
        self.session_reset = reset;
        self
    }

    /// The connect options new connections start from.
    ///
    /// ```
    /// use sqlx::Postgres;
    /// let manager = tidewater_sqlx::SqlxManager::<Postgres>::from_url("postgres://localhost:6432/app")?;
    /// assert_eq!(manager.options().get_port(), 6432);
    /// # Ok::<(), tidewater_sqlx::SqlxError>(())
    /// ```
    pub fn options(&self) -> &Options<DB> {
        &self.options
    }

    /// A pool of this manager's connections.
    ///
    /// # Errors
    /// The pool configuration's error.
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use sqlx::Sqlite;
    /// let pool = tidewater_sqlx::SqlxManager::<Sqlite>::from_url("sqlite://app.db?mode=rwc")?
    ///     .into_pool(tidewater::PoolConfig::default())?;
    /// # Ok(()) }
    /// ```
    pub fn into_pool(self, config: PoolConfig) -> Result<Pool<Self>, ConfigError> {
        Pool::new(self, config)
    }

    /// The connect options for the next connection: the provider's
    /// credentials, if any, applied.
    async fn next_options(&self) -> Result<Options<DB>, SqlxError> {
        match &self.credentials {
            None => Ok(self.options.clone()),
            Some(provider) => {
                let credentials = provider.fetch().await.map_err(SqlxError::Credentials)?;
                Ok(DB::with_credentials(&self.options, &credentials))
            }
        }
    }

    async fn run_all(conn: &mut DB::Connection, statements: &[String]) -> Result<(), SqlxError> {
        for statement in statements {
            DB::execute(conn, statement)
                .await
                .map_err(|source| SqlxError::Setup {
                    statement: statement.clone(),
                    source,
                })?;
        }
        Ok(())
    }
}

macro_rules! credentials {
    ($db:ty, $feature:literal, $url:literal) => {
        #[cfg(feature = $feature)]
        impl SqlxManager<$db> {
            /// Fetches the user (when the provider gives one) and password
            /// for each new connection from `provider`: a rotated secret is
            /// used from the next connection on, the open ones are not
            /// touched. A provider failure is a transient connection error
            /// ([`SqlxError::Credentials`]) the pool retries.
            ///
            /// ```
            /// use tidewater::credentials::{Credentials, CredentialsProvider};
            /// let provider = CredentialsProvider::new(|| async { Ok(Credentials::password("token")) });
            #[doc = concat!("let manager = tidewater_sqlx::SqlxManager::<", stringify!($db), ">::from_url(", stringify!($url), ")?")]
            ///     .with_credentials(provider);
            /// assert!(!format!("{manager:?}").contains("token"));
            /// # Ok::<(), tidewater_sqlx::SqlxError>(())
            /// ```
            pub fn with_credentials(mut self, provider: CredentialsProvider) -> Self {
                self.credentials = Some(provider);
                self
            }
        }
    };
}

credentials!(
    sqlx::Postgres,
    "postgres",
    "postgres://app@localhost/orders"
);
credentials!(sqlx::MySql, "mysql", "mysql://app@localhost/orders");

impl<DB: Backend> Manager for SqlxManager<DB> {
    type Connection = DB::Connection;
    type Error = SqlxError;

    async fn connect(&self) -> Result<DB::Connection, SqlxError> {
        let options = self.next_options().await?;
        let mut conn = options.connect().await?;
        Self::run_all(&mut conn, &self.setup_sql).await?;
        Ok(conn)
    }

    async fn validate(&self, conn: &mut DB::Connection) -> Result<(), SqlxError> {
        Ok(conn.ping().await?)
    }

    fn is_broken(&self, conn: &mut DB::Connection) -> bool {
        // A `Transaction` dropped (or whose `begin`/`commit` was cancelled)
        // queues its rollback and lowers the depth at once; a depth still
        // up means one was leaked, and sqlx would take the next `begin` for
        // a savepoint.
        conn.is_in_transaction()
    }

    fn needs_reset(&self, _conn: &mut DB::Connection) -> bool {
        self.session_reset != SessionReset::Tracked || !self.reset_sql.is_empty()
    }

    async fn reset(&self, conn: &mut DB::Connection) -> Result<(), SqlxError> {
        if self.session_reset != SessionReset::Tracked {
            DB::reset(conn, self.session_reset).await?;
        }
        if self.session_reset == SessionReset::Full {
            Self::run_all(conn, &self.setup_sql).await?;
        }
        Self::run_all(conn, &self.reset_sql).await
    }

    fn classify(&self, error: &SqlxError) -> ErrorClass {
        error.class()
    }
}

impl<DB: Backend> fmt::Debug for SqlxManager<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlxManager")
            .field("database", &DB::LABEL)
            .field("url", &redact(self.options.to_url_lossy().as_str()))
            .field("setup_sql", &self.setup_sql.len())
            .field("reset_sql", &self.reset_sql.len())
            .field("credentials", &self.credentials.is_some())
            .field("session_reset", &self.session_reset)
            .finish()
    }
}

pub use tidewater::credentials::redact;
