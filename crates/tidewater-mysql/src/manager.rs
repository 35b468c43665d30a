//! The [`Manager`] for MySQL and MariaDB, and its settings.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use serde::{Deserialize, Serialize};
use tidewater::credentials::CredentialsProvider;
use tidewater::{ConfigError, ErrorClass, Hooks, Manager, Pool, PoolConfig};

use crate::connection::{MySqlConnection, SessionStatus};
use crate::error::{MySqlError, chain};

/// When a connection's session is reset before its next use.
///
/// ```
/// use tidewater_mysql::SessionReset;
/// assert_eq!(SessionReset::default(), SessionReset::Rollback);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionReset {
    /// Only when the server's last answer says a transaction may be open
    /// ([`SessionStatus`]): `ROLLBACK`, or `COM_RESET_CONNECTION` when
    /// autocommit was switched off. A clean connection costs nothing.
    #[default]
    Rollback,
    /// `COM_RESET_CONNECTION` before every reuse: session variables, user
    /// variables, temporary tables, prepared statements, locks and the
    /// transaction all go; then the session's statement timeout and
    /// [`MySqlOptions::setup_sql`] are applied again, so the session starts
    /// as a new one does. For applications that change session state;
    /// costs two round trips a checkout (the reset, then the statement
    /// timeout), one more per setup statement, and the driver's cached
    /// prepared statements.
    ResetConnection,
}

/// Settings of a [`MySqlManager`]. Serde-ready, so a service can load them
/// from TOML or the environment.
///
/// | key | default | meaning |
/// |---|---|---|
/// | `url` | `mysql://root@localhost:3306` | `mysql://user:password@host:port/database?param=value`; mysql_async's parameters (`require_ssl=true` for verified TLS, `stmt_cache_size`, `tcp_keepalive`, `compression`, `socket`, `prefer_socket`...), except those of its own pool (`pool_min`, `pool_max`, `conn_ttl`...) and those that turn verification off |
/// | `statement_timeout` | 30 s | queries stop after this: the server's own timer on every statement (MariaDB `max_statement_time`; MySQL `max_execution_time`, `SELECT` only), and for [`MySqlConnection`]'s methods a `KILL QUERY` from a second connection as a backstop (`"off"` to disable) |
/// | `session_reset` | `"rollback"` | `"rollback"` or `"reset_connection"`, see [`SessionReset`] |
/// | `ssl_root_cert` | none | a PEM file of CA certificates trusted besides the built-in roots, with `require_ssl=true` |
/// | `setup_sql` | `[]` | statements run in order on each new connection before the pool hands it out (`SET SESSION sql_mode = ...`, `SET time_zone = ...`), after the statement timeout is set, and again after each `COM_RESET_CONNECTION`; one that fails fails the connection attempt (naming the statement), and one the server rejects (syntax, unknown variable) is permanent |
///
/// ```
/// let options: tidewater_mysql::MySqlOptions = toml::from_str(r#"
///     url = "mysql://app:secret@db:3306/orders"
///     statement_timeout = "5s"
///     session_reset = "reset_connection"
///     setup_sql = ["SET SESSION sql_mode = 'STRICT_ALL_TABLES'", "SET time_zone = '+00:00'"]
/// "#).unwrap();
/// assert!(!format!("{options:?}").contains("secret"));
/// assert_eq!(options.setup_sql.len(), 2);
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MySqlOptions {
    /// Where and how to connect.
    pub url: String,
    /// Bound on every statement.
    #[serde(with = "tidewater::config::optional_duration")]
    pub statement_timeout: Option<Duration>,
    /// When a session is reset before reuse.
    pub session_reset: SessionReset,
    /// Extra CA certificates (PEM) for `require_ssl=true`.
    pub ssl_root_cert: Option<PathBuf>,
    /// Statements run, in order, on each new connection before the pool
    /// hands it out, and again after each `COM_RESET_CONNECTION`.
    ///
    /// ```
    /// use tidewater_mysql::MySqlOptions;
    /// let options = MySqlOptions {
    ///     setup_sql: vec!["SET SESSION sql_mode = 'ANSI_QUOTES'".into()],
    ///     ..Default::default()
    /// };
    /// assert!(MySqlOptions::default().setup_sql.is_empty());
    /// ```
    pub setup_sql: Vec<String>,
}

impl Default for MySqlOptions {
    fn default() -> Self {
        Self {
            url: "mysql://root@localhost:3306".into(),
            statement_timeout: Some(Duration::from_secs(30)),
            session_reset: SessionReset::Rollback,
            ssl_root_cert: None,
            setup_sql: Vec::new(),
        }
    }
}

impl MySqlOptions {
    /// The longest a query through [`MySqlConnection`]'s methods can take
    /// before it returns: `statement_timeout`, the head start the client
    /// gives the server's own timer (0.5 s), then the grace for its
    /// `KILL QUERY` (3 s), after which the connection is given up. `None`
    /// when the statement timeout is off. A deadline around a query (a
    /// request's, a test's) should allow at least this much.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tidewater_mysql::MySqlOptions;
    ///
    /// let options = MySqlOptions { statement_timeout: Some(Duration::from_secs(5)), ..Default::default() };
    /// assert_eq!(options.query_bound(), Some(Duration::from_millis(8_500)));
    /// ```
    pub fn query_bound(&self) -> Option<Duration> {
        self.statement_timeout.map(crate::connection::query_bound)
    }
}

impl std::fmt::Debug for MySqlOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySqlOptions")
            .field("url", &redact(&self.url))
            .field("statement_timeout", &self.statement_timeout)
            .field("session_reset", &self.session_reset)
            .field("ssl_root_cert", &self.ssl_root_cert)
            .field("setup_sql", &self.setup_sql)
            .finish()
    }
}

pub use tidewater::credentials::redact;

/// URL parameters of mysql_async's own pool, which tidewater replaces.
const POOL_PARAMS: [&str; 8] = [
    "pool_min",
    "pool_max",
    "inactive_connection_ttl",
    "ttl_check_interval",
    "conn_ttl",
    "abs_conn_ttl",
    "abs_conn_ttl_jitter",
    "reset_connection",
];

/// What every connection of a manager shares.
#[derive(Clone)]
pub(crate) struct Shared {
    /// The driver's settings, also used for the second connection that
    /// sends `KILL QUERY`.
    opts: Opts,
    /// `host:port` (or the socket path), for errors.
    pub(crate) addr: String,
    pub(crate) statement_timeout: Option<Duration>,
    /// Run on each new session and after each `COM_RESET_CONNECTION`.
    pub(crate) setup_sql: Vec<String>,
    /// Asked for the user and password of each new connection.
    credentials: Option<CredentialsProvider>,
}

impl Shared {
    /// Opens a session with the manager's settings and, when there is a
    /// provider, the credentials it gives now. Used for pooled connections
    /// and for the second connection that sends `KILL QUERY`.
    pub(crate) async fn open(&self) -> Result<Conn, MySqlError> {
        let opts = match &self.credentials {
            None => self.opts.clone(),
            Some(provider) => {
                let credentials = provider.fetch().await.map_err(MySqlError::Credentials)?;
                let mut builder = OptsBuilder::from_opts(self.opts.clone());
                if let Some(user) = credentials.user() {
                    builder = builder.user(Some(user));
                }
                Opts::from(builder.pass(Some(credentials.secret())))
            }
        };
        Conn::new(opts)
            .await
            .map_err(|error| MySqlError::connecting(error, &self.addr))
    }
}

/// Opens and looks after MySQL or MariaDB sessions for a
/// [`tidewater::Pool`].
///
/// - validates with `COM_PING`;
/// - on return, reads the server's status flags from its last answer
///   (`SERVER_STATUS_IN_TRANS`, `SERVER_STATUS_AUTOCOMMIT`, results still
///   pending, or an error that leaves the state unknown) and resets only
///   when a transaction may be open, unless told to reset always
///   ([`SessionReset`]);
/// - classifies errors by MySQL code ([`MySqlError::class`]).
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tidewater::{Pool, PoolConfig};
/// use tidewater_mysql::{MySqlManager, MySqlOptions};
///
/// let options = MySqlOptions { url: "mysql://app:secret@localhost/orders".into(), ..Default::default() };
/// let pool = Pool::new(MySqlManager::new(options)?, PoolConfig::default())?;
/// let mut conn = pool.get().await?;
/// let ids: Vec<u64> = conn.query("SELECT id FROM orders WHERE paid").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MySqlManager {
    shared: Arc<Shared>,
    options: MySqlOptions,
}

impl MySqlManager {
    /// Checks `options` and prepares to connect; opens nothing yet.
    ///
    /// # Errors
    /// [`MySqlError::Config`] naming what is wrong in the URL or options.
    ///
    /// ```
    /// use tidewater_mysql::{MySqlManager, MySqlOptions};
    /// let options = MySqlOptions { url: "mysql://app:pw@db/x?pool_max=5".into(), ..Default::default() };
    /// let error = MySqlManager::new(options).unwrap_err().to_string();
    /// assert!(error.contains("max_size"), "{error}");
    /// assert!(!error.contains("pw@"), "{error}");
    /// ```
    pub fn new(options: MySqlOptions) -> Result<Self, MySqlError> {
        let invalid =
            |what: String| MySqlError::Config(format!("{what} (url {})", redact(&options.url)));
        if options.statement_timeout == Some(Duration::ZERO) {
            return Err(invalid(
                "statement_timeout = 0s: use \"off\" for no statement timeout".into(),
            ));
        }
        let params = query_params(&options.url);
        if let Some(param) = params.iter().find(|(key, _)| POOL_PARAMS.contains(key)) {
            return Err(invalid(format!(
                "`{}` configures mysql_async's own pool, which tidewater replaces: \
                 use the pool's settings (max_size, idle_timeout, max_lifetime) instead",
                param.0
            )));
        }
        if let Some(param) = params.iter().find(|(key, value)| {
            matches!(*key, "verify_ca" | "verify_identity" | "built_in_roots")
                && value.eq_ignore_ascii_case("false")
        }) {
            return Err(invalid(format!(
                "`{}=false` would weaken TLS verification, which is always on: \
                 trust a private CA with ssl_root_cert instead",
                param.0
            )));
        }
        let parsed = Opts::from_url(&options.url).map_err(|error| invalid(chain(&error)))?;
        let mut builder = OptsBuilder::from_opts(parsed.clone());
        if !params.iter().any(|(key, _)| *key == "prefer_socket") {
            // Connect where the URL says: no silent switch to the server's
            // Unix socket after the first handshake.
            builder = builder.prefer_socket(false);
        }
        if let Some(path) = &options.ssl_root_cert {
            let Some(ssl) = parsed.ssl_opts() else {
                return Err(invalid(
                    "ssl_root_cert needs require_ssl=true in the url".into(),
                ));
            };
            builder = builder.ssl_opts(ssl.clone().with_root_certs(vec![path.clone().into()]));
        }
        let opts = Opts::from(builder);
        if opts.ssl_opts().is_some() {
            #[cfg(not(feature = "rustls"))]
            return Err(invalid(
                "require_ssl=true needs TLS: build tidewater-mysql with the `rustls` feature"
                    .into(),
            ));
            // The driver builds its TLS setup with the process's default
            // crypto provider, which rustls cannot pick by itself when an
            // application links more than one: make it ring unless the
            // application chose already.
            #[cfg(feature = "rustls")]
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let addr = match opts.socket() {
            Some(socket) => socket.to_owned(),
            None => format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port()),
        };
        if let Some(index) = options
            .setup_sql
            .iter()
            .position(|statement| statement.trim().is_empty())
        {
            return Err(invalid(format!("setup_sql[{index}] is empty")));
        }
        let shared = Shared {
            opts,
            addr,
            statement_timeout: options.statement_timeout,
            setup_sql: options.setup_sql.clone(),
            credentials: None,
        };
        Ok(Self {
            shared: Arc::new(shared),
            options,
        })
    }

    /// Takes the user and password of each new connection from `provider`,
    /// asked before every connection attempt (and before the second
    /// connection that sends a `KILL QUERY`): a rotated password or a fresh
    /// IAM token is used from the next connection on, and the connections
    /// already open are not touched. The user it returns, if any, and the
    /// password replace those of the URL for that connection. A provider
    /// that fails makes the attempt fail with [`MySqlError::Credentials`],
    /// which the pool retries like a refused connection.
    ///
    /// ```
    /// use tidewater::credentials::{Credentials, CredentialsProvider};
    /// use tidewater_mysql::{MySqlManager, MySqlOptions};
    ///
    /// let provider = CredentialsProvider::new(|| async {
    ///     Ok(Credentials::password("token-4711").with_user("app"))
    /// });
    /// let manager = MySqlManager::new(MySqlOptions::default()).unwrap().with_credentials(provider);
    /// assert!(!format!("{manager:?}").contains("4711"));
    /// ```
    pub fn with_credentials(mut self, provider: CredentialsProvider) -> Self {
        Arc::make_mut(&mut self.shared).credentials = Some(provider);
        self
    }

    /// The settings it was made with.
    ///
    /// ```
    /// # use tidewater_mysql::{MySqlManager, MySqlOptions};
    /// let manager = MySqlManager::new(MySqlOptions::default()).unwrap();
    /// assert_eq!(manager.options().statement_timeout, Some(std::time::Duration::from_secs(30)));
    /// ```
    pub fn options(&self) -> &MySqlOptions {
        &self.options
    }

    /// Builds a pool over this manager, then checks in the background
    /// whether `max_size` fits in the server's `max_connections` and the
    /// account's `max_user_connections`, logging a warning with the numbers
    /// when it does not. Needs a Tokio runtime.
    ///
    /// # Errors
    /// A pool configuration key out of range.
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tidewater_mysql::{MySqlManager, MySqlOptions};
    /// let pool = MySqlManager::new(MySqlOptions::default())?.into_pool(Default::default())?;
    /// # Ok(()) }
    /// ```
    pub fn into_pool(self, config: PoolConfig) -> Result<Pool<MySqlManager>, ConfigError> {
        self.into_pool_with_hooks(config, Hooks::new())
    }

    /// [`into_pool`](Self::into_pool), with [`Hooks`] the pool runs on its
    /// connections (after each connect, before each checkout).
    ///
    /// # Errors
    /// A pool configuration key out of range.
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tidewater::Hooks;
    /// use tidewater_mysql::{MySqlManager, MySqlOptions};
    /// let hooks = Hooks::new().after_connect(|conn| Box::pin(async move {
    ///     let _ = conn; // run session setup on the connection
    ///     Ok(())
    /// }));
    /// let pool = MySqlManager::new(MySqlOptions::default())?.into_pool_with_hooks(Default::default(), hooks)?;
    /// # Ok(()) }
    /// ```
    pub fn into_pool_with_hooks(
        self,
        config: PoolConfig,
        hooks: Hooks<MySqlManager>,
    ) -> Result<Pool<MySqlManager>, ConfigError> {
        let pool = Pool::builder(self, config).hooks(hooks).build()?;
        let probe = pool.clone();
        tokio::spawn(async move {
            match limit_warning(&probe).await {
                Ok(Some(warning)) => tracing::warn!(pool = probe.name(), "{warning}"),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(pool = probe.name(), %error, "could not read the server's connection limits")
                }
            }
        });
        Ok(pool)
    }
}

/// The URL's query parameters, undecoded (keys are plain words).
fn query_params(url: &str) -> Vec<(&str, &str)> {
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .collect()
}

/// A warning when the pool could take more connections than the server or
/// the account allows (the session's `@@max_user_connections` is the
/// account's own limit when it has one).
async fn limit_warning(
    pool: &Pool<MySqlManager>,
) -> Result<Option<String>, Box<dyn std::error::Error>> {
    let mut conn = pool.get().await?;
    let limits: Option<(u64, u64)> = conn
        .query_first("SELECT @@max_connections, @@max_user_connections")
        .await?;
    drop(conn);
    let (server, account) = limits.ok_or("no row")?;
    Ok(limit_message(pool.config().max_size, server, account))
}

/// The warning for a pool of `max_size` against the server's and the
/// account's limits (0: none).
fn limit_message(max_size: u32, server: u64, account: u64) -> Option<String> {
    let limit = [server, account].into_iter().filter(|&n| n > 0).min()?;
    (u64::from(max_size) > limit).then(|| {
        format!(
            "max_size {max_size} exceeds the {limit} connections the server allows this account \
             (max_connections {server}, max_user_connections {account}): callers will see \
             'too many connections' errors (MySQL 1040, 1203, 1226) before the pool is full"
        )
    })
}

impl std::fmt::Debug for MySqlManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySqlManager")
            .field("options", &self.options)
            .field("credentials", &self.shared.credentials)
            .finish_non_exhaustive()
    }
}

impl Manager for MySqlManager {
    type Connection = MySqlConnection;
    type Error = MySqlError;

    async fn connect(&self) -> Result<MySqlConnection, MySqlError> {
        let conn = self.shared.open().await?;
        MySqlConnection::open(conn, self.shared.clone()).await
    }

    /// `COM_PING`: one round trip, no statement.
    async fn validate(&self, conn: &mut MySqlConnection) -> Result<(), MySqlError> {
        Ok(conn.ping().await?)
    }

    fn is_broken(&self, conn: &mut MySqlConnection) -> bool {
        conn.is_broken()
    }

    fn needs_reset(&self, conn: &mut MySqlConnection) -> bool {
        self.options.session_reset == SessionReset::ResetConnection
            || !conn.session_status().is_clean()
    }

    /// `ROLLBACK` when only the transaction is in doubt, under
    /// [`SessionReset::Rollback`]; `COM_RESET_CONNECTION` otherwise.
    async fn reset(&self, conn: &mut MySqlConnection) -> Result<(), MySqlError> {
        if self.options.session_reset == SessionReset::Rollback {
            if conn.session_status() != SessionStatus::AutocommitOff {
                conn.query_drop("ROLLBACK").await?;
            }
            if conn.session_status().is_clean() {
                return Ok(());
            }
        }
        conn.reset_session().await
    }

    fn classify(&self, error: &MySqlError) -> ErrorClass {
        error.class()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_larger_than_the_accounts_limit_is_reported() {
        assert_eq!(limit_message(50, 151, 0), None);
        assert_eq!(limit_message(3, 151, 3), None);
        let warning = limit_message(5, 151, 3).unwrap();
        assert!(
            warning.starts_with("max_size 5 exceeds the 3 connections"),
            "{warning}"
        );
        assert!(
            limit_message(200, 151, 0)
                .unwrap()
                .contains("max_connections 151")
        );
    }

    #[test]
    fn passwords_are_redacted_wherever_they_are() {
        for (url, redacted) in [
            ("mysql://u:pw@h:3306/db", "mysql://u:***@h:3306/db"),
            ("mysql://u:p@ss@h/db", "mysql://u:***@h/db"),
            (
                "mysql://u:pw@h/db?socket=/tmp/a@b",
                "mysql://u:***@h/db?socket=/tmp/a@b",
            ),
            ("mysql://h/db?x=a:b@c", "mysql://h/db?x=a:b@c"),
            ("mysql://u@h/db", "mysql://u@h/db"),
        ] {
            assert_eq!(redact(url), redacted);
        }
    }
}
