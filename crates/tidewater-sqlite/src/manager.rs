//! The [`Manager`] for SQLite.

use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tidewater::{ConfigError, ErrorClass, Manager, Pool, PoolConfig};

use crate::connection::SqliteConnection;
use crate::error::SqliteError;
use crate::open::{Location, Settings};
use crate::options::{SessionReset, SqliteOptions, bare_name};

/// Opens and looks after SQLite connections for a [`tidewater::Pool`].
///
/// Each connection runs on a thread of its own. An in-memory database is
/// a named database with a shared cache, `file:NAME?mode=memory&cache=shared`,
/// which the manager keeps alive with one extra connection of its own (the
/// anchor, held for the manager's lifetime): its data outlives every
/// checkout, even when the pool has no connection open.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tidewater::PoolConfig;
/// use tidewater_sqlite::{SqliteManager, SqliteOptions};
///
/// let pool = SqliteManager::new(SqliteOptions::in_memory())?.into_pool(PoolConfig::default())?;
/// let conn = pool.get().await?;
/// conn.execute_batch("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)").await?;
/// conn.execute("INSERT INTO kv VALUES (?1, ?2)", ("answer", "42")).await?;
/// drop(conn.detach()); // closed: the pool has no connection left
///
/// let conn = pool.get().await?; // a new connection, the same database
/// let v: String = conn.query_value("SELECT v FROM kv WHERE k = 'answer'", ()).await?;
/// assert_eq!(v, "42");
/// # Ok(()) }
/// ```
pub struct SqliteManager {
    settings: Arc<Settings>,
    /// Keeps an in-memory database alive while the manager lives.
    anchor: Option<Mutex<Connection>>,
}

impl SqliteManager {
    /// Checks `options` (pragma names against those SQLite knows, since
    /// SQLite ignores unknown ones silently) and, for an in-memory database,
    /// creates it by opening the anchor connection. Opens no file.
    ///
    /// # Errors
    /// [`SqliteError::Config`] naming what is wrong.
    ///
    /// ```
    /// use tidewater_sqlite::{SqliteManager, SqliteOptions};
    ///
    /// let options = SqliteOptions { pragmas: vec![("jurnal_mode".into(), "WAL".into())], ..SqliteOptions::in_memory() };
    /// let error = SqliteManager::new(options).unwrap_err();
    /// assert!(error.to_string().contains("unknown pragma jurnal_mode"), "{error}");
    /// ```
    pub fn new(options: SqliteOptions) -> Result<Self, SqliteError> {
        options.check()?;
        check_pragma_names(&options)?;
        let settings = Settings::new(options);
        let anchor = match &settings.location {
            Location::Memory { uri, .. } => {
                let anchor =
                    Connection::open_with_flags(uri, settings.flags()).map_err(|error| {
                        SqliteError::Config(format!(
                            "cannot create {}: {error}",
                            settings.location.describe()
                        ))
                    })?;
                Some(Mutex::new(anchor))
            }
            _ => None,
        };
        Ok(Self {
            settings: Arc::new(settings),
            anchor,
        })
    }

    /// The settings it was made with.
    pub fn options(&self) -> &SqliteOptions {
        &self.settings.options
    }

    /// What connections open: the file's path, or the URI of the in-memory
    /// database (`file:NAME?mode=memory&cache=shared`, for opening it from
    /// elsewhere in the process with `SQLITE_OPEN_URI`).
    ///
    /// ```
    /// use tidewater_sqlite::{SqliteManager, SqliteOptions};
    ///
    /// let options = SqliteOptions { memory_name: Some("cache".into()), ..SqliteOptions::in_memory() };
    /// let manager = SqliteManager::new(options).unwrap();
    /// assert_eq!(manager.location(), "file:cache?mode=memory&cache=shared");
    /// ```
    pub fn location(&self) -> std::borrow::Cow<'_, str> {
        self.settings.location.target().to_string_lossy()
    }

    /// The pragmas each connection gets, in order (the defaults merged
    /// with the configured ones; `journal_mode` left out when read-only).
    pub fn pragmas(&self) -> &[(String, String)] {
        &self.settings.pragmas
    }

    /// Builds a pool over this manager, after logging a warning for each
    /// setting that works against another:
    ///
    /// - `connect_timeout` shorter than `busy_timeout`: a connection
    ///   attempt blocked by a lock is cut off before SQLite can say so;
    /// - `statement_timeout` shorter than `busy_timeout`: likewise for
    ///   statements waiting for a lock;
    /// - a file database not in WAL mode with `max_size` above 1: readers
    ///   and the writer block each other.
    ///
    /// # Errors
    /// A pool configuration key out of range.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tidewater_sqlite::{SqliteManager, SqliteOptions};
    /// let dir = tempfile::tempdir()?;
    /// let manager = SqliteManager::new(SqliteOptions::file(dir.path().join("app.db")))?;
    /// let pool = manager.into_pool(tidewater::PoolConfig { max_size: 8, ..Default::default() })?;
    /// # Ok(()) }
    /// ```
    pub fn into_pool(self, config: PoolConfig) -> Result<Pool<SqliteManager>, ConfigError> {
        for warning in self.warnings(&config) {
            tracing::warn!(pool = %config.name, "{warning}");
        }
        Pool::new(self, config)
    }

    fn warnings(&self, config: &PoolConfig) -> Vec<String> {
        let options = &self.settings.options;
        let mut warnings = Vec::new();
        if config.connect_timeout < options.busy_timeout {
            warnings.push(format!(
                "connect_timeout ({:?}) is shorter than busy_timeout ({:?}): a connection attempt blocked by a lock is cut off before SQLite reports SQLITE_BUSY",
                config.connect_timeout, options.busy_timeout
            ));
        }
        if let Some(limit) = options
            .statement_timeout
            .filter(|t| *t < options.busy_timeout)
        {
            warnings.push(format!(
                "statement_timeout ({limit:?}) is shorter than busy_timeout ({:?}): statements waiting for a lock are interrupted before SQLite reports SQLITE_BUSY",
                options.busy_timeout
            ));
        }
        let wal = self.settings.pragmas.iter().any(|(name, value)| {
            bare_name(name).eq_ignore_ascii_case("journal_mode")
                && value.eq_ignore_ascii_case("wal")
        });
        if matches!(self.settings.location, Location::File(_))
            && !wal
            && config.max_size > 1
            && !options.read_only
        {
            warnings.push(format!(
                "journal_mode is not WAL and max_size is {}: readers and the writer block each other",
                config.max_size
            ));
        }
        warnings
    }
}

/// Refuses pragma names SQLite does not know: it would ignore them.
fn check_pragma_names(options: &SqliteOptions) -> Result<(), SqliteError> {
    if options.pragmas.is_empty() {
        return Ok(());
    }
    let known = || -> rusqlite::Result<Vec<String>> {
        let conn = Connection::open_in_memory()?;
        let mut statement = conn.prepare("SELECT name FROM pragma_pragma_list")?;
        statement.query_map([], |row| row.get(0))?.collect()
    };
    let known = known().map_err(|error| {
        SqliteError::Config(format!("cannot list the pragmas SQLite knows: {error}"))
    })?;
    for (name, _) in &options.pragmas {
        let bare = bare_name(name);
        if !known.iter().any(|k| k.eq_ignore_ascii_case(bare)) {
            return Err(SqliteError::Config(format!(
                "unknown pragma {name} (SQLite would ignore it without a word)"
            )));
        }
    }
    Ok(())
}

impl std::fmt::Debug for SqliteManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteManager")
            .field("database", &self.settings.location.describe())
            .field("options", &self.settings.options)
            .field("anchored", &self.anchor.is_some())
            .finish()
    }
}

impl Manager for SqliteManager {
    type Connection = SqliteConnection;
    type Error = SqliteError;

    async fn connect(&self) -> Result<SqliteConnection, SqliteError> {
        SqliteConnection::open(self.settings.clone()).await
    }

    /// `SELECT 1` on the connection's thread, which also checks that the
    /// database file is still the one the connection opened.
    async fn validate(&self, conn: &mut SqliteConnection) -> Result<(), SqliteError> {
        conn.validate().await
    }

    fn is_broken(&self, conn: &mut SqliteConnection) -> bool {
        conn.is_broken()
    }

    fn needs_reset(&self, conn: &mut SqliteConnection) -> bool {
        conn.in_transaction() || self.settings.options.session_reset == SessionReset::Full
    }

    async fn reset(&self, conn: &mut SqliteConnection) -> Result<(), SqliteError> {
        conn.reset(self.settings.options.session_reset == SessionReset::Full)
            .await
    }

    fn classify(&self, error: &SqliteError) -> ErrorClass {
        error.class()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicting_settings_are_named() {
        let manager = SqliteManager::new(SqliteOptions {
            pragmas: vec![("journal_mode".into(), "DELETE".into())],
            statement_timeout: Some(std::time::Duration::from_secs(1)),
            ..SqliteOptions::file("/tmp/never-opened.db")
        })
        .unwrap();
        let config = PoolConfig {
            connect_timeout: std::time::Duration::from_secs(2),
            ..PoolConfig::default()
        };
        let warnings = manager.warnings(&config);
        assert_eq!(warnings.len(), 3, "{warnings:#?}");
        assert!(warnings[0].starts_with("connect_timeout (2s) is shorter than busy_timeout (5s)"));
        assert!(warnings[2].contains("journal_mode is not WAL and max_size is 50"));
        let fine = SqliteManager::new(SqliteOptions::in_memory()).unwrap();
        assert!(fine.warnings(&PoolConfig::default()).is_empty());
    }

    #[test]
    fn in_memory_databases_are_unique_unless_named() {
        let a = SqliteManager::new(SqliteOptions::in_memory()).unwrap();
        let b = SqliteManager::new(SqliteOptions::in_memory()).unwrap();
        assert_ne!(a.location(), b.location());
        assert!(a.location().ends_with("?mode=memory&cache=shared"));
    }
}
