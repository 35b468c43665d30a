//! The backend's settings: where the database is, how to open it, and the
//! pragmas every connection gets.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::SqliteError;

/// The `path` that asks for an in-memory database.
pub const MEMORY: &str = ":memory:";

/// The pragmas every connection gets unless the options say otherwise,
/// in the order they are applied.
///
/// - `journal_mode = WAL`: readers never block the writer nor the writer
///   readers, and a commit is one append to the log.
/// - `synchronous = NORMAL`: in WAL mode, no corruption on a crash; a
///   power loss can lose the last commits, not the database.
/// - `foreign_keys = ON`: declared foreign keys are enforced.
///
/// ```
/// assert_eq!(tidewater_sqlite::DEFAULT_PRAGMAS[0], ("journal_mode", "WAL"));
/// ```
pub const DEFAULT_PRAGMAS: [(&str, &str); 3] = [
    ("journal_mode", "WAL"),
    ("synchronous", "NORMAL"),
    ("foreign_keys", "ON"),
];

/// What a connection's session gets before its next use.
///
/// ```
/// use tidewater_sqlite::SessionReset;
/// assert_eq!(SessionReset::default(), SessionReset::Rollback);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionReset {
    /// Roll back a transaction left open; nothing otherwise. Free when no
    /// transaction was left open (the connection's thread reports its
    /// autocommit state after every call).
    #[default]
    Rollback,
    /// Also, before every reuse: drop temporary tables, views and triggers,
    /// detach attached databases, and set the configured pragmas and the
    /// connection-level ones (`cache_size`, `temp_store`,
    /// `recursive_triggers`...) back to their values just after connect;
    /// then run [`SqliteOptions::setup_sql`] again, so the session starts
    /// as a new one does. For applications that change session state;
    /// costs one trip to the connection's thread per checkout.
    Full,
}

/// Settings of a [`SqliteManager`](crate::SqliteManager). Serde-ready, so
/// a service can load them from TOML or the environment.
///
/// | key | default | meaning |
/// |---|---|---|
/// | `path` | `":memory:"` | the database file; `":memory:"` for an in-memory database shared by the pool's connections; a `file:` URI is passed to SQLite as it is |
/// | `memory_name` | unique per manager | name of the in-memory database; managers given the same name share it |
/// | `create` | true | create the file when it is missing (off: a missing file is a permanent error) |
/// | `read_only` | false | open read-only; when off, a file the process cannot write is a permanent error rather than a connection that fails on its first write |
/// | `busy_timeout` | 5 s | how long a statement waits for another connection's lock before `SQLITE_BUSY` |
/// | `pragmas` | `[]` | `[name, value]` pairs applied at connect, in order, after the defaults [`DEFAULT_PRAGMAS`] (`journal_mode = WAL`, `synchronous = NORMAL`, `foreign_keys = ON`); a pair naming a default replaces it |
/// | `session_reset` | `"rollback"` | `"rollback"` or `"full"`, see [`SessionReset`] |
/// | `statement_timeout` | 30 s | a closure run on a connection longer than this is interrupted (`sqlite3_interrupt`) and the caller gets an error (`"off"` to disable) |
/// | `setup_sql` | `[]` | statements run in order on each new connection, after the pragmas, before the pool hands it out (`ATTACH 'audit.db' AS audit`, `CREATE TEMP VIEW ...`), and again after each `"full"` session reset; one that fails fails the connection attempt (naming the statement), and one SQLite rejects (syntax, missing table) is permanent |
///
/// ```
/// use std::time::Duration;
///
/// let options: tidewater_sqlite::SqliteOptions = toml::from_str(r#"
///     path = "/var/lib/orders/orders.db"
///     busy_timeout = "2s"
///     pragmas = [["synchronous", "FULL"], ["cache_size", "-65536"]]
///     setup_sql = ["ATTACH '/var/lib/orders/audit.db' AS audit"]
/// "#).unwrap();
/// assert_eq!(options.busy_timeout, Duration::from_secs(2));
/// assert_eq!(options.setup_sql, ["ATTACH '/var/lib/orders/audit.db' AS audit"]);
/// assert_eq!(
///     options.effective_pragmas(),
///     [("journal_mode", "WAL"), ("synchronous", "FULL"), ("foreign_keys", "ON"), ("cache_size", "-65536")]
///         .map(|(n, v)| (n.to_owned(), v.to_owned()))
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqliteOptions {
    /// The database file, `":memory:"`, or a `file:` URI.
    pub path: PathBuf,
    /// Name of the in-memory database (`path = ":memory:"`); unique per
    /// manager when unset.
    pub memory_name: Option<String>,
    /// Create the file when it is missing.
    pub create: bool,
    /// Open read-only.
    pub read_only: bool,
    /// How long a statement waits for a lock before `SQLITE_BUSY`.
    #[serde(with = "tidewater::config::duration")]
    pub busy_timeout: Duration,
    /// Pragmas applied at connect after the defaults, in order.
    pub pragmas: Vec<(String, String)>,
    /// What a session gets before reuse.
    pub session_reset: SessionReset,
    /// Bound on each closure run on a connection.
    #[serde(with = "tidewater::config::optional_duration")]
    pub statement_timeout: Option<Duration>,
    /// Statements run, in order, on each new connection after the pragmas,
    /// and again after each [`SessionReset::Full`].
    ///
    /// ```
    /// use tidewater_sqlite::SqliteOptions;
    /// let options = SqliteOptions {
    ///     setup_sql: vec!["CREATE TEMP VIEW recent AS SELECT 1 AS id".into()],
    ///     ..SqliteOptions::in_memory()
    /// };
    /// assert!(SqliteOptions::default().setup_sql.is_empty());
    /// ```
    pub setup_sql: Vec<String>,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            path: PathBuf::from(MEMORY),
            memory_name: None,
            create: true,
            read_only: false,
            busy_timeout: Duration::from_secs(5),
            pragmas: Vec::new(),
            session_reset: SessionReset::Rollback,
            statement_timeout: Some(Duration::from_secs(30)),
            setup_sql: Vec::new(),
        }
    }
}

impl SqliteOptions {
    /// Options for the database file at `path`, defaults otherwise.
    ///
    /// ```
    /// let options = tidewater_sqlite::SqliteOptions::file("/tmp/app.db");
    /// assert!(options.create);
    /// ```
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }

    /// Options for an in-memory database, unique to the manager built from
    /// them (the default `path`).
    ///
    /// ```
    /// let options = tidewater_sqlite::SqliteOptions::in_memory();
    /// assert!(options.is_memory());
    /// ```
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Whether these options name an in-memory database.
    pub fn is_memory(&self) -> bool {
        self.path.as_os_str() == MEMORY
    }

    /// The pragmas a connection gets, in order: [`DEFAULT_PRAGMAS`], each
    /// replaced by a configured pragma of the same name (names compare
    /// without case), then the other configured pragmas.
    pub fn effective_pragmas(&self) -> Vec<(String, String)> {
        let mut pragmas: Vec<(String, String)> = DEFAULT_PRAGMAS
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        for (name, value) in &self.pragmas {
            match pragmas
                .iter_mut()
                .find(|(known, _)| known.eq_ignore_ascii_case(name))
            {
                Some(slot) => slot.1.clone_from(value),
                None => pragmas.push((name.clone(), value.clone())),
            }
        }
        pragmas
    }

    /// Checks what can be checked without opening the database.
    pub(crate) fn check(&self) -> Result<(), SqliteError> {
        let config = |message: String| Err(SqliteError::Config(message));
        if self.path.as_os_str().is_empty() {
            return config("path is empty (use \":memory:\" for an in-memory database)".into());
        }
        if let Some(name) = &self.memory_name {
            if !self.is_memory() {
                return config(format!(
                    "memory_name = {name:?} is set but path is {}, not \":memory:\"",
                    self.path.display()
                ));
            }
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
            {
                return config(format!(
                    "memory_name = {name:?}: allowed are letters, digits, '_', '-' and '.'"
                ));
            }
        }
        if self.busy_timeout > Duration::from_secs(3600) {
            return config(format!(
                "busy_timeout = {:?}, allowed: 0 to 1 h",
                self.busy_timeout
            ));
        }
        if self.statement_timeout.is_some_and(|t| t.is_zero()) {
            return config("statement_timeout = 0; use \"off\" to disable it".into());
        }
        if let Some(index) = self
            .setup_sql
            .iter()
            .position(|statement| statement.trim().is_empty())
        {
            return config(format!("setup_sql[{index}] is empty"));
        }
        for (name, value) in &self.pragmas {
            if !is_pragma_name(name) {
                return config(format!(
                    "pragma name {name:?} is not an identifier (schema.name or name)"
                ));
            }
            if !is_pragma_value(value) {
                return config(format!(
                    "pragma {name} = {value:?}: a value is a word, a number or a 'quoted string'"
                ));
            }
        }
        Ok(())
    }
}

fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `name` or `schema.name`.
fn is_pragma_name(name: &str) -> bool {
    match name.split_once('.') {
        Some((schema, name)) => is_identifier(schema) && is_identifier(name),
        None => is_identifier(name),
    }
}

/// A word or number (`WAL`, `-2000`, `1.5`), or a single-quoted string with
/// quotes doubled inside: nothing that could end the statement.
fn is_pragma_value(value: &str) -> bool {
    if let Some(inner) = value
        .strip_prefix('\'')
        .and_then(|rest| rest.strip_suffix('\''))
    {
        return !inner.replace("''", "").contains('\'');
    }
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+-.".contains(c))
}

/// The pragma's own name, without a schema.
pub(crate) fn bare_name(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(_, bare)| bare)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_replaced_in_place_and_others_appended() {
        let options = SqliteOptions {
            pragmas: vec![
                ("cache_size".into(), "-4000".into()),
                ("JOURNAL_MODE".into(), "DELETE".into()),
            ],
            ..SqliteOptions::default()
        };
        let names: Vec<String> = options
            .effective_pragmas()
            .into_iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        assert_eq!(
            names,
            [
                "journal_mode=DELETE",
                "synchronous=NORMAL",
                "foreign_keys=ON",
                "cache_size=-4000"
            ]
        );
    }

    #[test]
    fn pragmas_that_could_inject_sql_are_refused() {
        for (name, value) in [
            ("cache_size; DROP TABLE t", "1"),
            ("main.", "1"),
            ("cache_size", "1; DROP TABLE t"),
            ("cache_size", "'a'b'"),
            ("cache_size", ""),
        ] {
            let options = SqliteOptions {
                pragmas: vec![(name.into(), value.into())],
                ..SqliteOptions::default()
            };
            let error = options.check().expect_err(name);
            assert!(
                error
                    .to_string()
                    .starts_with("invalid SQLite configuration: pragma"),
                "{error}"
            );
        }
        for value in ["WAL", "-2000", "'it''s'", "1.5"] {
            assert!(is_pragma_value(value), "{value}");
        }
        assert!(is_pragma_name("main.cache_size"));
    }

    #[test]
    fn memory_names_are_checked() {
        let options = SqliteOptions {
            memory_name: Some("a?b".into()),
            ..SqliteOptions::default()
        };
        assert!(options.check().is_err());
        let options = SqliteOptions {
            memory_name: Some("cache".into()),
            ..SqliteOptions::file("/tmp/x.db")
        };
        assert!(
            options
                .check()
                .unwrap_err()
                .to_string()
                .contains("not \":memory:\"")
        );
    }
}
