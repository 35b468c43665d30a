//! The [`Manager`] for PostgreSQL, and its settings.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidewater::credentials::{Credentials, CredentialsProvider};
use tidewater::{ConfigError, ErrorClass, Hooks, Manager, Pool, PoolConfig, WeakPool};

use crate::capacity::check_capacity;
use crate::connect::{self, SessionWatch};
use crate::connection::PgConnection;
use crate::error::PgError;
use crate::fleet::FleetOptions;
use crate::tls::Tls;

/// What a connection's session gets before its next use.
///
/// ```
/// use tidewater_postgres::SessionReset;
/// assert_eq!(SessionReset::default(), SessionReset::Rollback);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionReset {
    /// Roll back a transaction left open (or failed); nothing otherwise.
    /// Free when no transaction was left open.
    #[default]
    Rollback,
    /// Also `DISCARD ALL` before every reuse: settings, temporary tables,
    /// prepared statements, advisory locks, listeners all go, then
    /// [`PgOptions::setup_sql`] runs again so the session starts as a new
    /// one does. For applications that change session state; costs a round
    /// trip per checkout (plus one per setup statement).
    DiscardAll,
}

/// Settings of a [`PgManager`]. Serde-ready, so a service can load them
/// from TOML or the environment.
///
/// | key | default | meaning |
/// |---|---|---|
/// | `url` | `postgres://postgres@localhost/postgres` | a libpq URL or key/value string; several hosts, `target_session_attrs`, `load_balance_hosts`, `sslmode` (`require` = TLS with verified certificates) |
/// | `statement_timeout` | 30 s | queries run through [`PgConnection`]'s methods are cancelled on the server after this (`"off"` to disable) |
/// | `session_reset` | `"rollback"` | `"rollback"` or `"discard_all"`, see [`SessionReset`] |
/// | `transaction_pooler` | false | behind PgBouncer in transaction mode: no session state, named statements kept inside transactions |
/// | `ssl_root_cert` | none | a PEM file of CA certificates trusted besides the system's |
/// | `capacity_replicas` | 1 | copies of this pool running against the server, for [`check_capacity`] |
/// | `setup_sql` | `[]` | statements run in order on each new connection before the pool hands it out (`SET search_path = app`...), and again after each `DISCARD ALL`; one that fails fails the connection attempt (naming the statement), and a statement the server rejects (syntax, unknown setting: SQLSTATE classes 42, 22...) is permanent |
///
/// ```
/// let options: tidewater_postgres::PgOptions = toml::from_str(r#"
///     url = "postgres://app:secret@db1,db2/orders?target_session_attrs=read-write"
///     statement_timeout = "5s"
///     setup_sql = ["SET search_path = app, public", "SET application_name = 'orders'"]
/// "#).unwrap();
/// assert!(!format!("{options:?}").contains("secret"));
/// assert_eq!(options.setup_sql.len(), 2);
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PgOptions {
    /// Where and how to connect.
    pub url: String,
    /// Bound on queries run through [`PgConnection`]'s methods.
    #[serde(with = "tidewater::config::optional_duration")]
    pub statement_timeout: Option<Duration>,
    /// What a session gets before reuse.
    pub session_reset: SessionReset,
    /// Connections go through a transaction pooler (PgBouncer, transaction mode).
    pub transaction_pooler: bool,
    /// Extra CA certificates (PEM) for `sslmode=require`.
    pub ssl_root_cert: Option<PathBuf>,
    /// How many copies of this pool run against the server (service
    /// replicas), for the capacity check.
    pub capacity_replicas: u32,
    /// Statements run, in order, on each new connection before the pool
    /// hands it out, and again after each `DISCARD ALL`
    /// ([`SessionReset::DiscardAll`]). Not allowed with
    /// `transaction_pooler`, which keeps no session state.
    ///
    /// ```
    /// use tidewater_postgres::PgOptions;
    /// let options = PgOptions {
    ///     setup_sql: vec!["SET search_path = app".into(), "SET TIME ZONE 'UTC'".into()],
    ///     ..Default::default()
    /// };
    /// assert!(PgOptions::default().setup_sql.is_empty());
    /// ```
    pub setup_sql: Vec<String>,
    /// Fleet mode: replicas with the same fleet name share the server's
    /// connections, coordinated through it (see [`crate::fleet`]). Off by
    /// default, and not allowed with `transaction_pooler` (the pooler owns
    /// the server's connections then).
    ///
    /// ```
    /// let options: tidewater_postgres::PgOptions = toml::from_str(r#"
    ///     url = "postgres://app@db/orders"
    ///     [fleet]
    ///     name = "orders"
    /// "#).unwrap();
    /// assert_eq!(options.fleet.unwrap().name, "orders");
    /// ```
    pub fleet: Option<FleetOptions>,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@localhost/postgres".into(),
            statement_timeout: Some(Duration::from_secs(30)),
            session_reset: SessionReset::Rollback,
            transaction_pooler: false,
            ssl_root_cert: None,
            capacity_replicas: 1,
            setup_sql: Vec::new(),
            fleet: None,
        }
    }
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &redact(&self.url))
            .field("statement_timeout", &self.statement_timeout)
            .field("session_reset", &self.session_reset)
            .field("transaction_pooler", &self.transaction_pooler)
            .field("ssl_root_cert", &self.ssl_root_cert)
            .field("capacity_replicas", &self.capacity_replicas)
            .field("setup_sql", &self.setup_sql)
            .field("fleet", &self.fleet)
            .finish()
    }
}

pub use tidewater::credentials::redact;

/// Opens and looks after PostgreSQL sessions for a [`tidewater::Pool`].
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tidewater::{Pool, PoolConfig};
/// use tidewater_postgres::{PgManager, PgOptions};
///
/// let options = PgOptions { url: "postgres://app@localhost/orders".into(), ..Default::default() };
/// let pool = Pool::new(PgManager::new(options)?, PoolConfig::default())?;
/// let conn = pool.get().await?;
/// let rows = conn.query("SELECT id FROM orders WHERE paid", &[]).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PgManager {
    config: tokio_postgres::Config,
    options: PgOptions,
    tls: Tls,
    credentials: Option<CredentialsProvider>,
    /// This pool's id in its fleet, when fleet mode is on.
    member: Option<String>,
}

impl PgManager {
    /// Checks `options` and prepares to connect; opens nothing yet.
    ///
    /// # Errors
    /// [`PgError::Config`] naming what is wrong in the URL or options.
    ///
    /// ```
    /// use tidewater_postgres::{PgManager, PgOptions};
    /// let options = PgOptions { url: "postgres://db:notaport/x".into(), ..Default::default() };
    /// assert!(PgManager::new(options).unwrap_err().to_string().starts_with("invalid PostgreSQL configuration"));
    /// ```
    pub fn new(options: PgOptions) -> Result<Self, PgError> {
        let mut config = tokio_postgres::Config::from_str(&options.url).map_err(|error| {
            PgError::Config(format!(
                "{} in url {}",
                tidewater::classify::with_causes(&error),
                redact(&options.url)
            ))
        })?;
        if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
            return Err(PgError::Config(format!(
                "no host in url {}",
                redact(&options.url)
            )));
        }
        if config.get_application_name().is_none() {
            config.application_name("tidewater");
        }
        let member = match &options.fleet {
            None => None,
            Some(_) if options.transaction_pooler => {
                return Err(PgError::Config(
                    "fleet mode shares the server's connections between replicas, which a transaction pooler (transaction_pooler = true) owns: turn one of them off".into(),
                ));
            }
            Some(fleet) => {
                fleet.check()?;
                let member = crate::fleet::new_member_id();
                // The server counts the member's sessions by this name.
                config.application_name(crate::fleet::session_tag(&member));
                Some(member)
            }
        };
        if let Some(index) = options
            .setup_sql
            .iter()
            .position(|statement| statement.trim().is_empty())
        {
            return Err(PgError::Config(format!("setup_sql[{index}] is empty")));
        }
        if options.transaction_pooler && !options.setup_sql.is_empty() {
            return Err(PgError::Config(
                "setup_sql sets up a session, which a transaction pooler (transaction_pooler = true) does not keep between transactions".into(),
            ));
        }
        let tls = Tls::for_mode(config.get_ssl_mode(), options.ssl_root_cert.as_deref())?;
        Ok(Self {
            config,
            options,
            tls,
            credentials: None,
            member,
        })
    }

    /// Takes the user and password of each new connection from `provider`,
    /// asked before every connection attempt: a rotated password or a
    /// fresh IAM token is used from the next connection on, and the
    /// connections already open are not touched. The user it returns, if
    /// any, and the password replace those of the URL for that connection.
    /// A provider that fails makes the attempt fail with
    /// [`PgError::Credentials`], which the pool retries like a refused
    /// connection.
    ///
    /// ```
    /// use tidewater::credentials::{Credentials, CredentialsProvider};
    /// use tidewater_postgres::{PgManager, PgOptions};
    ///
    /// let provider = CredentialsProvider::new(|| async {
    ///     Ok(Credentials::password("token-4711").with_user("app"))
    /// });
    /// let manager = PgManager::new(PgOptions::default()).unwrap().with_credentials(provider);
    /// assert!(!format!("{manager:?}").contains("4711"));
    /// ```
    pub fn with_credentials(mut self, provider: CredentialsProvider) -> Self {
        self.credentials = Some(provider);
        self
    }

    /// The settings it was made with.
    pub fn options(&self) -> &PgOptions {
        &self.options
    }

    /// This pool's id in its fleet (the `application_name` of its
    /// connections is `tidewater-fleet/ID`); `None` without fleet mode.
    ///
    /// ```
    /// use tidewater_postgres::{FleetOptions, PgManager, PgOptions};
    /// let fleet = FleetOptions { name: "orders".into(), ..Default::default() };
    /// let options = PgOptions { fleet: Some(fleet), ..Default::default() };
    /// assert_eq!(PgManager::new(options).unwrap().fleet_member().unwrap().len(), 12);
    /// assert!(PgManager::new(PgOptions::default()).unwrap().fleet_member().is_none());
    /// ```
    pub fn fleet_member(&self) -> Option<&str> {
        self.member.as_deref()
    }

    /// Builds a pool over this manager, then checks in the background
    /// whether it fits on the server ([`check_capacity`] for
    /// `capacity_replicas` copies), logging a warning with the numbers when
    /// it does not, and reports the server's free connections to the pool
    /// every minute for its capacity alert. Needs a Tokio runtime.
    ///
    /// # Errors
    /// A pool configuration key out of range.
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tidewater_postgres::{PgManager, PgOptions};
    /// let options = PgOptions { capacity_replicas: 4, ..Default::default() };
    /// let pool = PgManager::new(options)?.into_pool(Default::default())?;
    /// # Ok(()) }
    /// ```
    pub fn into_pool(self, config: PoolConfig) -> Result<Pool<PgManager>, ConfigError> {
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
    /// use tidewater_postgres::{PgManager, PgOptions};
    /// let hooks = Hooks::new().after_connect(|conn| Box::pin(async move {
    ///     let _ = conn; // run session setup on the connection
    ///     Ok(())
    /// }));
    /// let pool = PgManager::new(PgOptions::default())?.into_pool_with_hooks(Default::default(), hooks)?;
    /// # Ok(()) }
    /// ```
    pub fn into_pool_with_hooks(
        self,
        config: PoolConfig,
        hooks: Hooks<PgManager>,
    ) -> Result<Pool<PgManager>, ConfigError> {
        let replicas = self.options.capacity_replicas;
        let fleet = self
            .options
            .fleet
            .clone()
            .zip(self.member.clone())
            .map(|membership| (self.clone(), membership));
        let pool = Pool::builder(self, config).hooks(hooks).build()?;
        match fleet {
            // The fleet, not a replica count, decides what fits.
            Some((manager, (options, member))) => {
                // Until its first step, a member keeps to its fallback share.
                pool.resize(options.fallback.min(pool.config().max_size))?;
                tokio::spawn(crate::fleet::coordinate(
                    pool.weak(),
                    manager,
                    options,
                    member,
                ));
            }
            None => {
                tokio::spawn(watch_capacity(pool.weak(), replicas));
            }
        }
        Ok(pool)
    }
}

impl std::fmt::Debug for PgManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgManager")
            .field("options", &self.options)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl PgManager {
    /// Opens a session the way the pool's connections are opened, for a
    /// driver built on `tokio-postgres` (diesel-async's
    /// `AsyncPgConnection::try_from(client)`, say): on the first host
    /// that takes it (`host`, `hostaddr`, `load_balance_hosts`,
    /// `connect_timeout`, `keepalives`), TLS when `sslmode=require`
    /// (feature `rustls`), `target_session_attrs` checked,
    /// `application_name` `tidewater` unless the URL names one, then
    /// [`PgOptions::setup_sql`] run. The user and password are those of
    /// `credentials` when given, else of the provider given to
    /// [`with_credentials`](Self::with_credentials) (asked now), else of
    /// the URL.
    ///
    /// Returns the client and its [`SessionWatch`], which reads the
    /// transaction status off the socket and closes the socket when
    /// dropped: keep the two together. The statement timeout and the
    /// session reset are [`PgConnection`]'s, so they do not apply here.
    ///
    /// # Errors
    /// As [`Manager::connect`]: the last host's error, classified by
    /// [`PgError::class`].
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tidewater::credentials::Credentials;
    /// use tidewater_postgres::{PgManager, PgOptions, TransactionStatus};
    ///
    /// let manager = PgManager::new(PgOptions { url: "postgres://app@db1,db2/orders".into(), ..Default::default() })?;
    /// let (client, watch) = manager.open_session(None).await?;
    /// assert_eq!(watch.transaction_status(), TransactionStatus::Idle);
    ///
    /// let rotated = Credentials::password("token-4711");
    /// let (other, other_watch) = manager.open_session(Some(&rotated)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn open_session(
        &self,
        credentials: Option<&Credentials>,
    ) -> Result<(tokio_postgres::Client, SessionWatch), PgError> {
        let fetched;
        let credentials = match (credentials, &self.credentials) {
            (Some(credentials), _) => Some(credentials),
            (None, Some(provider)) => {
                fetched = provider.fetch().await.map_err(PgError::Credentials)?;
                Some(&fetched)
            }
            (None, None) => None,
        };
        let (client, watch) = match credentials {
            None => connect::open(&self.config, &self.tls).await?,
            Some(credentials) => {
                let mut config = self.config.clone();
                if let Some(user) = credentials.user() {
                    config.user(user);
                }
                config.password(credentials.secret());
                connect::open(&config, &self.tls).await?
            }
        };
        self.run_setup(&client).await?;
        Ok((client, watch))
    }

    /// Runs `setup_sql` on `client`, in order; the first failure names
    /// its statement.
    async fn run_setup(&self, client: &tokio_postgres::Client) -> Result<(), PgError> {
        for statement in &self.options.setup_sql {
            client
                .batch_execute(statement)
                .await
                .map_err(|error| PgError::Setup {
                    statement: statement.clone(),
                    source: Box::new(error.into()),
                })?;
        }
        Ok(())
    }
}

impl Manager for PgManager {
    type Connection = PgConnection;
    type Error = PgError;

    async fn connect(&self) -> Result<PgConnection, PgError> {
        let opened = self.open_session(None).await?;
        Ok(PgConnection::new(
            opened,
            self.options.statement_timeout,
            self.options.transaction_pooler,
        ))
    }

    /// An empty simple query: one round trip, no plan, no snapshot.
    async fn validate(&self, conn: &mut PgConnection) -> Result<(), PgError> {
        conn.client().simple_query("").await?;
        Ok(())
    }

    fn is_broken(&self, conn: &mut PgConnection) -> bool {
        conn.is_broken()
    }

    fn needs_reset(&self, conn: &mut PgConnection) -> bool {
        !conn.transaction_status().is_clean()
            || (self.options.session_reset == SessionReset::DiscardAll
                && !self.options.transaction_pooler)
    }

    async fn reset(&self, conn: &mut PgConnection) -> Result<(), PgError> {
        if !conn.transaction_status().is_clean() {
            conn.client().batch_execute("ROLLBACK").await?;
        }
        if self.options.session_reset == SessionReset::DiscardAll
            && !self.options.transaction_pooler
        {
            conn.forget_statements();
            conn.client().batch_execute("DISCARD ALL").await?;
            self.run_setup(conn.client()).await?;
        }
        Ok(())
    }

    fn classify(&self, error: &PgError) -> ErrorClass {
        error.class()
    }
}

/// How often the capacity is read again after the first check.
const CAPACITY_CHECK_INTERVAL: Duration = Duration::from_secs(60);

/// Checks the server's capacity at start (a warning with the numbers when
/// the pools could exhaust it) and every minute after, reporting it to the
/// pool for its capacity alert, until the pool goes.
async fn watch_capacity(pool: WeakPool<PgManager>, replicas: u32) {
    let mut first = true;
    loop {
        let Some(probe) = pool.upgrade() else { return };
        match check_capacity(&probe, replicas).await {
            Ok(capacity) => {
                probe.report_capacity(capacity.server());
                match capacity.warning() {
                    Some(warning) if first => tracing::warn!(pool = probe.name(), "{warning}"),
                    None if first => tracing::info!(pool = probe.name(), "{capacity}"),
                    _ => {}
                }
            }
            Err(error) => {
                tracing::debug!(pool = probe.name(), %error, "could not check the server's capacity")
            }
        }
        first = false;
        drop(probe);
        tokio::time::sleep(CAPACITY_CHECK_INTERVAL).await;
    }
}
