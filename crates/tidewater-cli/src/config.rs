//! The service's configuration: defaults, a TOML file, `TIDEWATER_*`
//! environment variables and flags, merged in that order (each later
//! layer wins over the ones before), then checked as a whole.
//!
//! | key | default | environment | meaning |
//! |---|---|---|---|
//! | `bind` | `"127.0.0.1:8080"` | `TIDEWATER_BIND` | the address to listen on |
//! | `database_url` | `"sqlite://tidewater.db"` | `TIDEWATER_DATABASE_URL`, `DATABASE_URL` | `postgres://…`, `mysql://…`, `sqlite://PATH`, `sqlite::memory:` or a file path |
//! | `request_timeout` | `"10s"` | `TIDEWATER_REQUEST_TIMEOUT` | a request still running after this gets a 503 problem |
//! | `log_format` | `"human"` | `TIDEWATER_LOG_FORMAT` | `"human"` or `"json"` |
//! | `log_level` | `"info"` | `TIDEWATER_LOG_LEVEL` | a tracing filter: `"debug"`, `"info,tidewater=debug"`… |
//! | `pool.*` | [`tidewater::PoolConfig`]'s, except `name = "tidewater"` and `acquire_timeout = "5s"` | `TIDEWATER_POOL__MAX_SIZE`, `TIDEWATER_POOL__ALERTS__WINDOW`… | the pool |
//! | `sqlite.*` | [`SqliteOptions`]'s | `TIDEWATER_SQLITE__BUSY_TIMEOUT`… | SQLite settings (not `path`: that is `database_url`) |
//! | `postgres.*` | [`PgOptions`]'s | `TIDEWATER_POSTGRES__STATEMENT_TIMEOUT`… | PostgreSQL settings (not `url`) |
//! | `mysql.*` | [`MySqlOptions`]'s | `TIDEWATER_MYSQL__STATEMENT_TIMEOUT`… | MySQL/MariaDB settings (not `url`) |
//!
//! An environment variable `TIDEWATER_A__B` sets the key `a.b`: drop the
//! prefix, lower-case, and `__` separates tables. Its value is read as the
//! key's type (a number for `pool.max_size`, a string for a duration; an
//! array in TOML syntax, `[["synchronous","FULL"]]`). `DATABASE_URL` sets
//! `database_url` unless `TIDEWATER_DATABASE_URL` does. Variables whose
//! first part names no key (`TIDEWATER_PG_BIN`, say, which the test kit
//! reads) are left alone, with a warning in the log.
//!
//! The pool keys renamed in 0.2 ([`tidewater::config::RENAMED`]:
//! `pool.connect_backoff_initial` is now `pool.connect_backoff.initial`,
//! `pool.breaker_enabled` `pool.breaker.enabled`...) are still read under
//! their old names, in the file, the environment and flags, with a warning
//! that names the new key. A file, the environment or the flags giving
//! one key under both names is refused; across layers the later one
//! wins, whatever the name.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidewater::PoolConfig;
use tidewater::config::RENAMED;
use tidewater_mysql::MySqlOptions;
use tidewater_postgres::PgOptions;
use tidewater_sqlite::SqliteOptions;

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_FILE: &str = "tidewater.toml";

/// The prefix of the environment variables read.
pub const ENV_PREFIX: &str = "TIDEWATER_";

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// The service's settings. See the [module documentation](self).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where to listen.
    pub bind: SocketAddr,
    /// Which database: its URL, or an SQLite file's path.
    pub database_url: String,
    /// A request still running after this gets a 503 problem.
    #[serde(with = "tidewater::config::duration")]
    pub request_timeout: Duration,
    /// Human-readable or JSON logs.
    pub log_format: LogFormat,
    /// A tracing filter.
    pub log_level: String,
    /// The pool.
    pub pool: PoolConfig,
    /// SQLite settings (`path` comes from `database_url`).
    pub sqlite: SqliteOptions,
    /// PostgreSQL settings (`url` comes from `database_url`).
    pub postgres: PgOptions,
    /// MySQL / MariaDB settings (`url` comes from `database_url`).
    pub mysql: MySqlOptions,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://tidewater.db".to_owned(),
            request_timeout: Duration::from_secs(10),
            log_format: LogFormat::Human,
            log_level: "info".to_owned(),
            pool: PoolConfig {
                name: "tidewater".to_owned(),
                // Below request_timeout, so a request that cannot get a
                // connection is answered by the pool's own error, which
                // says why.
                acquire_timeout: Duration::from_secs(5),
                ..PoolConfig::default()
            },
            sqlite: SqliteOptions::default(),
            postgres: PgOptions::default(),
            mysql: MySqlOptions::default(),
        }
    }
}

/// The database a [`Config`] names, with its backend's settings.
#[derive(Clone, Debug)]
pub enum Backend {
    /// An SQLite file (or an in-memory database).
    Sqlite(SqliteOptions),
    /// A PostgreSQL server.
    Postgres(PgOptions),
    /// A MySQL or MariaDB server.
    MySql(MySqlOptions),
}

impl Backend {
    /// `sqlite`, `postgres` or `mysql`: the key of its settings' table.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
            Self::MySql(_) => "mysql",
        }
    }
}

impl Config {
    /// The database [`database_url`](Self::database_url) names, with the
    /// settings of its backend's table.
    ///
    /// # Errors
    /// A URL of a scheme no backend serves.
    ///
    /// ```
    /// use tidewater_cli::config::{Backend, Config};
    /// let config = Config { database_url: "postgres://app@db/bank".into(), ..Config::default() };
    /// assert!(matches!(config.backend().unwrap(), Backend::Postgres(o) if o.url == "postgres://app@db/bank"));
    /// let config = Config { database_url: "sqlite:///var/lib/bank.db".into(), ..Config::default() };
    /// assert!(matches!(config.backend().unwrap(), Backend::Sqlite(o) if o.path.to_str() == Some("/var/lib/bank.db")));
    /// ```
    pub fn backend(&self) -> Result<Backend, InvalidConfig> {
        let url = self.database_url.trim();
        let invalid = |message: String| InvalidConfig {
            key: "database_url".to_owned(),
            origin: None,
            message,
        };
        if url.is_empty() {
            return Err(invalid(
                "empty; give a postgres://, mysql:// or sqlite:// URL, or a file path".into(),
            ));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Backend::Postgres(PgOptions {
                url: url.to_owned(),
                ..self.postgres.clone()
            }));
        }
        if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            let url = url.replacen("mariadb://", "mysql://", 1);
            return Ok(Backend::MySql(MySqlOptions {
                url,
                ..self.mysql.clone()
            }));
        }
        let path = if let Some(rest) = url.strip_prefix("sqlite://") {
            rest
        } else if let Some(rest) = url.strip_prefix("sqlite:") {
            rest
        } else if let Some((scheme, _)) = url.split_once("://") {
            return Err(invalid(format!(
                "unknown scheme {scheme:?} in {}: use postgres://, mysql:// or sqlite://",
                redact(url)
            )));
        } else {
            url
        };
        if path.is_empty() {
            return Err(invalid(format!("{url:?} names no file")));
        }
        let path = if path == ":memory:" {
            PathBuf::from(tidewater_sqlite::MEMORY)
        } else {
            PathBuf::from(path)
        };
        Ok(Backend::Sqlite(SqliteOptions {
            path,
            ..self.sqlite.clone()
        }))
    }

    /// The configuration as TOML, as `--print-config` shows it: passwords
    /// in the database URL replaced by `***`, and of the three backend
    /// tables only the one in use.
    ///
    /// ```
    /// let config = tidewater_cli::config::Config {
    ///     database_url: "postgres://app:s3cret@db/bank".into(),
    ///     ..Default::default()
    /// };
    /// let text = config.to_toml_redacted();
    /// assert!(text.contains("database_url = \"postgres://app:***@db/bank\""), "{text}");
    /// assert!(!text.contains("s3cret") && !text.contains("[sqlite]"));
    /// ```
    pub fn to_toml_redacted(&self) -> String {
        let mut table = toml::Table::try_from(self).expect("the configuration serializes");
        table.insert(
            "database_url".into(),
            toml::Value::String(redact(&self.database_url)),
        );
        let active = self.backend().map(|backend| backend.name()).ok();
        for section in ["sqlite", "postgres", "mysql"] {
            if Some(section) == active {
                if let Some(toml::Value::Table(options)) = table.get_mut(section) {
                    options.remove("url");
                    options.remove("path");
                }
            } else {
                table.remove(section);
            }
        }
        toml::to_string(&table).expect("a TOML table prints")
    }
}

pub use tidewater::credentials::redact;

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The configuration file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A command-line flag.
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Env(name) => write!(f, "environment variable {name}"),
            Self::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// A configuration that cannot be used: the key, where its value came
/// from, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidConfig {
    /// The key, dotted (`pool.max_size`); empty when the file as a whole
    /// is at fault.
    pub key: String,
    /// Where the value came from, when not from the defaults.
    pub origin: Option<Origin>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid configuration: ")?;
        if !self.key.is_empty() {
            f.write_str(&self.key)?;
        }
        if let Some(origin) = &self.origin {
            if self.key.is_empty() {
                write!(f, "{origin}")?;
            } else {
                write!(f, " (from {origin})")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for InvalidConfig {}

/// One value given on the command line: `key` set to `value` by `flag`.
#[derive(Clone, Debug)]
pub struct Override {
    /// The dotted key.
    pub key: String,
    /// Its value, read as the key's type.
    pub value: String,
    /// The flag, for messages (`--bind`, `--set pool.max_size=4`).
    pub flag: String,
}

/// What [`load`] found.
#[derive(Debug)]
pub struct Loaded {
    /// The effective configuration.
    pub config: Config,
    /// The file read, if any.
    pub file: Option<PathBuf>,
    /// Things to log once logging is set up.
    pub warnings: Vec<String>,
}

/// Reads the configuration: defaults, then `file` (or `tidewater.toml` in
/// `dir` when it exists and no file is given), then the environment
/// `env`, then `flags`; checks it as a whole (types, unknown keys, the
/// pool's ranges, the database URL's scheme, the log filter).
///
/// # Errors
/// The first wrong key, with where its value came from.
///
/// ```
/// use tidewater_cli::config::{load, Override};
/// let env = [("TIDEWATER_POOL__MAX_SIZE".to_owned(), "8".to_owned())];
/// let flags = [Override { key: "bind".into(), value: "127.0.0.1:9000".into(), flag: "--bind".into() }];
/// let loaded = load(None, std::path::Path::new("/nonexistent"), env, &flags).unwrap();
/// assert_eq!(loaded.config.pool.max_size, 8);
/// assert_eq!(loaded.config.bind.port(), 9000);
///
/// let env = [("TIDEWATER_POOL__MAX_SIZE".to_owned(), "0".to_owned())];
/// let error = load(None, std::path::Path::new("/nonexistent"), env, &[]).unwrap_err();
/// assert_eq!(error.key, "pool.max_size");
/// assert!(error.to_string().contains("TIDEWATER_POOL__MAX_SIZE"), "{error}");
/// ```
pub fn load(
    file: Option<&Path>,
    dir: &Path,
    env: impl IntoIterator<Item = (String, String)>,
    flags: &[Override],
) -> Result<Loaded, InvalidConfig> {
    let defaults = toml::Table::try_from(Config::default()).expect("the defaults serialize");
    let mut merged = defaults.clone();
    let mut origins: BTreeMap<String, Origin> = BTreeMap::new();
    let mut warnings = Vec::new();

    let file = match file {
        Some(path) => Some(path.to_owned()),
        None => Some(dir.join(DEFAULT_FILE)).filter(|path| path.is_file()),
    };
    if let Some(path) = &file {
        let origin = Origin::File(path.clone());
        let text = std::fs::read_to_string(path).map_err(|error| InvalidConfig {
            key: String::new(),
            origin: Some(origin.clone()),
            message: format!("cannot read it: {error}"),
        })?;
        let mut table: toml::Table = toml::from_str(&text).map_err(|error| InvalidConfig {
            key: String::new(),
            origin: Some(origin.clone()),
            message: error.to_string().trim_end().to_owned(),
        })?;
        for (old, new) in RENAMED {
            let pool = table.get_mut("pool").and_then(toml::Value::as_table_mut);
            let Some(value) = pool.and_then(|pool| pool.remove(*old)) else {
                continue;
            };
            let (old, new) = (format!("pool.{old}"), format!("pool.{new}"));
            renamed(
                &old,
                &new,
                &origin,
                lookup(&table, &new).is_some(),
                &mut warnings,
            )?;
            insert(&mut table, &new, value).map_err(|message| InvalidConfig {
                key: new,
                origin: Some(origin.clone()),
                message,
            })?;
        }
        merge(&mut merged, table, "", &origin, &mut origins);
    }

    let mut env: Vec<(String, String)> = env.into_iter().collect();
    env.sort();
    let tidewater_url = env.iter().any(|(name, _)| name == "TIDEWATER_DATABASE_URL");
    let mut from_env = Vec::new();
    for (name, value) in env {
        let key = if name == "DATABASE_URL" {
            if tidewater_url {
                continue;
            }
            "database_url".to_owned()
        } else if let Some(rest) = name.strip_prefix(ENV_PREFIX) {
            rest.to_ascii_lowercase().replace("__", ".")
        } else {
            continue;
        };
        let top = key.split('.').next().unwrap_or_default();
        if !defaults.contains_key(top) {
            warnings.push(format!(
                "environment variable {name} names no configuration key; ignored"
            ));
            continue;
        }
        from_env.push((key, value, Origin::Env(name)));
    }
    let from_flags = flags
        .iter()
        .map(|flag| {
            let origin = Origin::Flag(flag.flag.clone());
            (flag.key.clone(), flag.value.clone(), origin)
        })
        .collect();
    for layer in [from_env, from_flags] {
        let keys: Vec<String> = layer.iter().map(|(key, ..)| key.clone()).collect();
        for (key, value, origin) in layer {
            let key = match moved(&key) {
                Some(new) => {
                    let both = keys.contains(&new);
                    renamed(&key, &new, &origin, both, &mut warnings)?;
                    new
                }
                None => key,
            };
            set(&mut merged, &defaults, &key, &value, origin, &mut origins)?;
        }
    }

    let config: Config =
        serde_path_to_error::deserialize(toml::Value::Table(merged)).map_err(|error| {
            let key = error.path().to_string();
            let key = if key == "." { String::new() } else { key };
            InvalidConfig {
                origin: origin_of(&origins, &key),
                message: error.inner().to_string(),
                key,
            }
        })?;

    for key in ["sqlite.path", "postgres.url", "mysql.url"] {
        if let Some(origin) = origins.get(key) {
            return Err(InvalidConfig {
                key: key.to_owned(),
                origin: Some(origin.clone()),
                message:
                    "the database is chosen by database_url (or DATABASE_URL); set that instead"
                        .into(),
            });
        }
    }
    config.pool.validate().map_err(|error| {
        let key = format!("pool.{}", error.key());
        InvalidConfig {
            origin: origin_of(&origins, &key),
            key,
            message: error.to_string(),
        }
    })?;
    config.backend().map_err(|mut error| {
        error.origin = origin_of(&origins, &error.key);
        error
    })?;
    crate::logging::filter(&config.log_level).map_err(|mut error| {
        error.origin = origin_of(&origins, &error.key);
        error
    })?;
    Ok(Loaded {
        config,
        file,
        warnings,
    })
}

/// Deep-merges `from` into `into`: tables key by key, anything else
/// replaced. Records where each replaced leaf came from.
fn merge(
    into: &mut toml::Table,
    from: toml::Table,
    prefix: &str,
    origin: &Origin,
    origins: &mut BTreeMap<String, Origin>,
) {
    for (key, value) in from {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(table)) => {
                merge(existing, table, &path, origin, origins);
            }
            (_, value) => {
                origins.insert(path, origin.clone());
                into.insert(key, value);
            }
        }
    }
}

/// Sets the dotted `key` to `raw`, read as the type of the key's default
/// value (a string when the default has none).
fn set(
    merged: &mut toml::Table,
    defaults: &toml::Table,
    key: &str,
    raw: &str,
    origin: Origin,
    origins: &mut BTreeMap<String, Origin>,
) -> Result<(), InvalidConfig> {
    let invalid = |message: String| InvalidConfig {
        key: key.to_owned(),
        origin: Some(origin.clone()),
        message,
    };
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(invalid("not a configuration key".into()));
    }
    let value = match lookup(defaults, key) {
        Some(toml::Value::String(_)) => toml::Value::String(raw.to_owned()),
        Some(toml::Value::Integer(_)) => raw
            .trim()
            .parse()
            .map(toml::Value::Integer)
            .map_err(|_| invalid(format!("{raw:?} is not an integer")))?,
        Some(toml::Value::Float(_)) => raw
            .trim()
            .parse()
            .map(toml::Value::Float)
            .map_err(|_| invalid(format!("{raw:?} is not a number")))?,
        Some(toml::Value::Boolean(_)) => raw
            .trim()
            .parse()
            .map(toml::Value::Boolean)
            .map_err(|_| invalid(format!("{raw:?} is not true or false")))?,
        Some(toml::Value::Table(_)) => {
            return Err(invalid(
                "is a table: set its keys one by one (pool.max_size, say)".into(),
            ));
        }
        Some(_) | None => parse_value(raw).unwrap_or_else(|| toml::Value::String(raw.to_owned())),
    };
    insert(merged, key, value).map_err(invalid)?;
    origins.insert(key.to_owned(), origin);
    Ok(())
}

/// Puts `value` at the dotted `key`, making the tables on the way.
fn insert(mut table: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), String> {
    let (path, last) = key.rsplit_once('.').unwrap_or(("", key));
    for part in path.split('.').filter(|part| !part.is_empty()) {
        let entry = table
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match entry {
            toml::Value::Table(table) => table,
            _ => return Err(format!("{part} is not a table")),
        };
    }
    table.insert(last.to_owned(), value);
    Ok(())
}

/// The current name of a pool key that moved in 0.2
/// ([`tidewater::config::RENAMED`]): `pool.connect_backoff.initial` for
/// `pool.connect_backoff_initial`.
fn moved(key: &str) -> Option<String> {
    let old = key.strip_prefix("pool.")?;
    RENAMED
        .iter()
        .find(|(name, _)| *name == old)
        .map(|(_, new)| format!("pool.{new}"))
}

/// Accepts the moved key `old` (given by `origin`) as `new`, with a
/// warning that names `new`; refuses it when the same layer also gives
/// `new` (`both`), since neither would be right to drop silently.
fn renamed(
    old: &str,
    new: &str,
    origin: &Origin,
    both: bool,
    warnings: &mut Vec<String>,
) -> Result<(), InvalidConfig> {
    if both {
        return Err(InvalidConfig {
            key: old.to_owned(),
            origin: Some(origin.clone()),
            message: format!("the old name of {new}, which is given there too; keep only {new}"),
        });
    }
    let variable = match origin {
        Origin::Env(_) => format!(
            " ({ENV_PREFIX}{})",
            new.to_ascii_uppercase().replace('.', "__")
        ),
        Origin::File(_) | Origin::Flag(_) => String::new(),
    };
    warnings.push(format!(
        "{old} (from {origin}) is now {new}{variable}; the old name still works, for now"
    ));
    Ok(())
}

/// `raw` as a TOML value (an array, a number...), if it is one.
fn parse_value(raw: &str) -> Option<toml::Value> {
    let table: toml::Table = toml::from_str(&format!("v = {raw}")).ok()?;
    table.get("v").cloned()
}

/// The value at a dotted key.
fn lookup<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    let mut parts = key.split('.');
    let mut value = table.get(parts.next()?)?;
    for part in parts {
        value = value.as_table()?.get(part)?;
    }
    Some(value)
}

/// Where the value of `key` (or of the table holding it, or of a key in
/// it) came from.
fn origin_of(origins: &BTreeMap<String, Origin>, key: &str) -> Option<Origin> {
    if let Some(origin) = origins.get(key) {
        return Some(origin.clone());
    }
    let mut prefix = key;
    while let Some((parent, _)) = prefix.rsplit_once('.') {
        if let Some(origin) = origins.get(parent) {
            return Some(origin.clone());
        }
        prefix = parent;
    }
    let inside = format!("{key}.");
    origins
        .iter()
        .find(|(path, _)| key.is_empty() || path.starts_with(&inside))
        .map(|(_, origin)| origin.clone())
}
