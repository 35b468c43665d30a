//! The crate's error, and which failures are worth retrying.

use std::fmt;

use tidewater::ErrorClass;
use tidewater::credentials::BoxError;

/// What went wrong opening, checking or resetting an sqlx connection. Its
/// message names the cause and never contains a password.
///
/// ```
/// use tidewater::ErrorClass;
/// use tidewater_sqlx::SqlxError;
///
/// let error = SqlxError::Config("URL scheme `mysql` is not PostgreSQL's".into());
/// assert_eq!(error.class(), ErrorClass::Permanent);
/// assert_eq!(error.to_string(), "invalid sqlx configuration: URL scheme `mysql` is not PostgreSQL's");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum SqlxError {
    /// An error from sqlx: the server, the driver or the socket.
    Sqlx(sqlx::Error),
    /// The [`CredentialsProvider`](tidewater::credentials::CredentialsProvider)
    /// failed to give credentials for a new connection (transient: the pool
    /// retries with its backoff).
    Credentials(BoxError),
    /// A statement of the setup SQL failed on a new connection.
    Setup {
        /// The statement.
        statement: String,
        /// Why it failed.
        source: sqlx::Error,
    },
    /// The connection settings are wrong (this never fixes itself).
    Config(String),
}

impl SqlxError {
    /// Transient (retrying can help), full (the server has no room for
    /// another connection) or permanent.
    ///
    /// ```
    /// use tidewater::ErrorClass;
    /// use tidewater_sqlx::SqlxError;
    ///
    /// let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    /// assert_eq!(SqlxError::Sqlx(refused.into()).class(), ErrorClass::Transient);
    /// assert_eq!(SqlxError::Credentials("vault sealed".into()).class(), ErrorClass::Transient);
    /// ```
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Sqlx(error) => classify(error),
            Self::Setup { source, .. } => setup_class(source),
            Self::Credentials(_) => ErrorClass::Transient,
            Self::Config(_) => ErrorClass::Permanent,
        }
    }

    /// The sqlx error behind this one, if any.
    ///
    /// ```
    /// # use tidewater_sqlx::SqlxError;
    /// assert!(SqlxError::Config("x".into()).sqlx().is_none());
    /// ```
    pub fn sqlx(&self) -> Option<&sqlx::Error> {
        match self {
            Self::Sqlx(error) | Self::Setup { source: error, .. } => Some(error),
            _ => None,
        }
    }
}

/// A setup statement's error is classified as any other, except that a
/// MySQL/MariaDB server error means the server refused the statement
/// itself (permanent) unless it says nothing against it (a deadlock, too
/// many connections, shutdown...: [`tidewater::classify::mysql_setup_error`]).
/// PostgreSQL's SQLSTATE classes already tell a refused statement.
fn setup_class(error: &sqlx::Error) -> ErrorClass {
    if let sqlx::Error::Database(db) = error
        && let Code::MySql(number) = code_of(db.as_ref())
    {
        return tidewater::classify::mysql_setup_error(number);
    }
    classify(error)
}

/// Classifies an sqlx error, whichever database it comes from.
///
/// - PostgreSQL and MySQL/MariaDB errors by their code, with the tables
///   of [`tidewater::classify`] that tidewater-postgres and
///   tidewater-mysql use: full on too many connections (`53300`, 1040);
///   permanent on authentication, authorization and unknown database
///   (`28xxx`, `3D000`, 1044, 1045, 1049...), and for PostgreSQL on the
///   SQLSTATE classes `42`, `0A`, `22`, `3F`; transient otherwise
///   (`57P01`, `57P03`, `08xxx`, `40001`, 1203, 1205, 1213, 2013...).
/// - **Transient**: I/O errors (refused, reset, timed out), protocol
///   errors, sqlx's own pool timeout, a crashed SQLite worker; SQLite
///   `SQLITE_BUSY`, `SQLITE_LOCKED`, `SQLITE_IOERR`, `SQLITE_FULL`.
/// - **Permanent**: configuration and TLS errors; SQLite
///   `SQLITE_CANTOPEN` (missing file or folder), `SQLITE_CORRUPT`,
///   `SQLITE_NOTADB`, `SQLITE_READONLY`, `SQLITE_PERM`, `SQLITE_AUTH`.
/// - Anything else from a database: transient.
///
/// A failed setup statement ([`SqlxError::Setup`]) is classified the same
/// way, except that MySQL refusing the statement itself (syntax, unknown
/// variable, no privilege) is permanent
/// ([`tidewater::classify::mysql_setup_error`]).
///
/// ```
/// use tidewater::ErrorClass;
/// let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
/// assert_eq!(tidewater_sqlx::classify(&reset.into()), ErrorClass::Transient);
/// let tls = sqlx::Error::Tls("invalid peer certificate".into());
/// assert_eq!(tidewater_sqlx::classify(&tls), ErrorClass::Permanent);
/// ```
pub fn classify(error: &sqlx::Error) -> ErrorClass {
    use sqlx::Error as E;
    match error {
        E::Io(_) | E::Protocol(_) | E::PoolTimedOut | E::WorkerCrashed => ErrorClass::Transient,
        E::Configuration(_) | E::Tls(_) | E::InvalidArgument(_) | E::PoolClosed => {
            ErrorClass::Permanent
        }
        E::Database(db) => match code_of(db.as_ref()) {
            Code::Postgres(state) => tidewater::classify::postgres_sqlstate(state),
            Code::MySql(number) => tidewater::classify::mysql_error(number),
            Code::Sqlite(code) => sqlite_class(code),
            Code::Unknown => ErrorClass::Transient,
        },
        _ => ErrorClass::Transient,
    }
}

/// Whether `error`, or any error behind it, is a conflict a new attempt of
/// the transaction resolves: PostgreSQL `40001` serialization failure or
/// `40P01` deadlock, MySQL 1213 deadlock or 1205 lock wait timeout, SQLite
/// `SQLITE_BUSY` or `SQLITE_LOCKED` (with their extended codes, such as
/// `SQLITE_BUSY_SNAPSHOT`).
///
/// ```
/// let error = std::io::Error::other("not a database error");
/// assert!(!tidewater_sqlx::is_conflict(&error));
/// ```
pub fn is_conflict(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        let sqlx = error
            .downcast_ref::<sqlx::Error>()
            .or_else(|| error.downcast_ref::<SqlxError>().and_then(SqlxError::sqlx));
        if let Some(sqlx::Error::Database(db)) = sqlx {
            let conflict = match code_of(db.as_ref()) {
                Code::Postgres(state) => state == "40001" || state == "40P01",
                Code::MySql(number) => number == 1213 || number == 1205,
                Code::Sqlite(code) => matches!(code & 0xff, 5 | 6),
                Code::Unknown => false,
            };
            if conflict {
                return true;
            }
        }
        next = error.source();
    }
    false
}

/// A database error's code, by the database that sent it.
pub(crate) enum Code<'a> {
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Postgres(&'a str),
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    MySql(u16),
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    Sqlite(i32),
    Unknown,
}

pub(crate) fn code_of(db: &dyn sqlx::error::DatabaseError) -> Code<'_> {
    #[cfg(feature = "postgres")]
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        return Code::Postgres(pg.code());
    }
    #[cfg(feature = "mysql")]
    if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return Code::MySql(my.number());
    }
    #[cfg(feature = "sqlite")]
    if let Some(code) = db
        .try_downcast_ref::<sqlx::sqlite::SqliteError>()
        .and_then(sqlx::error::DatabaseError::code)
        .and_then(|code| code.parse().ok())
    {
        return Code::Sqlite(code);
    }
    let _ = db;
    Code::Unknown
}

fn sqlite_class(code: i32) -> ErrorClass {
    // Primary result codes: the low byte of an extended one.
    match code & 0xff {
        // CANTOPEN, CORRUPT, NOTADB, READONLY, PERM, AUTH
        14 | 11 | 26 | 8 | 3 | 23 => ErrorClass::Permanent,
        _ => ErrorClass::Transient,
    }
}

/// What a code means, for the codes an operator meets when connecting.
fn meaning(code: &Code<'_>) -> Option<&'static str> {
    match code {
        Code::Postgres(state) => tidewater::classify::postgres_sqlstate_meaning(state),
        Code::MySql(number) => tidewater::classify::mysql_error_meaning(*number),
        Code::Sqlite(code) => Some(match code & 0xff {
            5 => "database busy",
            6 => "table locked",
            14 => "cannot open the database file",
            _ => return None,
        }),
        Code::Unknown => None,
    }
}

/// An sqlx error's message, with the meaning of its code and the errors
/// behind it.
fn describe(error: &sqlx::Error) -> String {
    let mut text = match error {
        sqlx::Error::Database(db) => {
            let code = code_of(db.as_ref());
            let mut text = format!("{} (", db.message());
            match &code {
                Code::Postgres(state) => text.push_str(&format!("SQLSTATE {state}")),
                Code::MySql(number) => text.push_str(&format!("MySQL error {number}")),
                Code::Sqlite(number) => text.push_str(&format!("SQLite code {number}")),
                Code::Unknown => text.push_str(&format!(
                    "code {}",
                    db.code().as_deref().unwrap_or("unknown")
                )),
            }
            if let Some(meaning) = meaning(&code) {
                text.push_str(": ");
                text.push_str(meaning);
            }
            text.push(')');
            return text;
        }
        error => error.to_string(),
    };
    let mut next = std::error::Error::source(error);
    while let Some(cause) = next {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        next = cause.source();
    }
    text
}

impl fmt::Display for SqlxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlx(error) => f.write_str(&describe(error)),
            Self::Credentials(error) => {
                write!(f, "the credentials provider failed: {error}")
            }
            Self::Setup { statement, source } => {
                write!(f, "setup SQL `{statement}` failed: {}", describe(source))
            }
            Self::Config(message) => write!(f, "invalid sqlx configuration: {message}"),
        }
    }
}

impl std::error::Error for SqlxError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Sqlx(error) | Self::Setup { source: error, .. } => Some(error),
            Self::Credentials(error) => Some(error.as_ref()),
            Self::Config(_) => None,
        }
    }
}

impl From<sqlx::Error> for SqlxError {
    fn from(error: sqlx::Error) -> Self {
        Self::Sqlx(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_codes_are_classified() {
        for (code, class) in [
            (5, ErrorClass::Transient),
            (517, ErrorClass::Transient), // BUSY_SNAPSHOT
            (6, ErrorClass::Transient),
            (14, ErrorClass::Permanent),
            (26, ErrorClass::Permanent),
            (8, ErrorClass::Permanent),
        ] {
            assert_eq!(sqlite_class(code), class, "{code}");
        }
    }
}
