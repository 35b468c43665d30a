//! The crate's one error type, and which failures are worth retrying.
//!
//! Connection errors keep their driver's type: this crate opens the
//! session with tidewater-postgres (a [`PgError`], which classifies
//! itself) or mysql_async and hands the started session to diesel-async (`AsyncPgConnection::try_from`,
//! `AsyncMysqlConnection::try_from`), so a bad password is a SQLSTATE
//! `28P01` or a MySQL error 1045, not a sentence inside diesel's
//! `ConnectionError::BadConnection(String)`. Only SQLite (whose diesel
//! connection opens the file itself) and the session setup that
//! diesel-async runs go through diesel's error types; those are classified
//! from diesel's `DatabaseErrorKind`, the SQLSTATE, and for
//! `BadConnection` from SQLite's message (see [`DieselError::class`]).

use std::fmt;
use std::io;

use diesel::result::{ConnectionError, DatabaseErrorKind, Error as QueryError};
use tidewater::ErrorClass;
use tidewater::classify::{self, with_causes};
use tidewater::credentials::BoxError;
use tidewater_postgres::PgError;

/// What went wrong opening, checking or using a connection. Its message
/// names the cause and never contains a password.
///
/// ```
/// use tidewater::ErrorClass;
/// use tidewater_diesel::DieselError;
/// let error = DieselError::Config("no host in url postgres://app:***@/orders".into());
/// assert_eq!(error.class(), ErrorClass::Permanent);
/// assert!(error.to_string().starts_with("invalid configuration"));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum DieselError {
    /// The URL or the settings are wrong: this never fixes itself.
    Config(String),
    /// A socket could not be opened (MySQL/MariaDB; PostgreSQL's are
    /// [`Postgres`](Self::Postgres)).
    Io {
        /// The address tried.
        addr: String,
        /// The socket error.
        source: io::Error,
    },
    /// PostgreSQL could not be reached, refused the session, or was the
    /// wrong kind of server for `target_session_attrs`; or the driver
    /// failed while opening it. Classified and worded by
    /// tidewater-postgres (SQLSTATE and what it means, no password).
    Postgres(PgError),
    /// MySQL or MariaDB refused the session, or the driver failed while
    /// opening it.
    Mysql(mysql_async::Error),
    /// diesel could not open or set up the connection (SQLite, and the
    /// session settings diesel-async applies to a new connection).
    Connection(ConnectionError),
    /// A statement failed: setup SQL, validation, reset, or one of yours.
    Query(QueryError),
    /// The credentials provider failed: retried like a refused connection.
    Credentials(BoxError),
}

impl DieselError {
    /// Transient (retrying can help), full (the server has no room for
    /// another connection) or permanent.
    ///
    /// - PostgreSQL, by SQLSTATE, with [`tidewater::classify::postgres_sqlstate`]
    ///   (opening: [`PgError::class`], the same table, plus a TLS failure
    ///   permanent): `53300` too many connections is full; classes `28`
    ///   (bad password, role), `3D` (unknown database), `42`, `0A`, `22`,
    ///   `3F` are permanent; everything else (`57P01` admin shutdown,
    ///   `57P03` cannot connect now, `08xxx`, `40001`) and errors without a
    ///   SQLSTATE (refused, reset, closed) are transient.
    /// - MySQL/MariaDB, by error number, with
    ///   [`tidewater::classify::mysql_error`] (tidewater-mysql's table): 1040
    ///   is full; 1044, 1045, 1049, 1129, 1130, 1251, 1698, 1820, 1862,
    ///   3118, 4151 and URL errors are permanent; others (1203, 1226 the
    ///   account's limits among them) and socket or protocol errors are
    ///   transient.
    /// - diesel's `ConnectionError`: `InvalidConnectionUrl` and
    ///   `InvalidCString` are permanent; `CouldntSetupConfiguration` is
    ///   classified by its query error; `BadConnection(String)` is only a
    ///   message, so it is read: SQLite's "unable to open database file",
    ///   "file is not a database", "attempt to write a readonly database"
    ///   and a missing file are permanent, anything else transient (a
    ///   message this crate does not know errs towards retrying, which the
    ///   pool bounds with its backoff and `acquire_timeout`).
    /// - A query error: serialization failure, closed connection, unable
    ///   to send are transient; a database error by its SQLSTATE as above;
    ///   other diesel errors (a setup statement diesel rejects) permanent.
    /// - The credentials provider failing: transient.
    ///
    /// ```
    /// use tidewater::ErrorClass;
    /// use tidewater_diesel::DieselError;
    /// let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    /// let error = DieselError::Io { addr: "127.0.0.1:5432".into(), source: refused };
    /// assert_eq!(error.class(), ErrorClass::Transient);
    /// ```
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Config(_) => ErrorClass::Permanent,
            Self::Io { .. } | Self::Credentials(_) => ErrorClass::Transient,
            Self::Postgres(error) => error.class(),
            Self::Mysql(error) => mysql_class(error),
            Self::Connection(error) => connection_class(error),
            Self::Query(error) => query_class(error),
        }
    }

    /// The SQLSTATE, when the server sent one.
    ///
    /// ```
    /// # use tidewater_diesel::DieselError;
    /// assert_eq!(DieselError::Config("x".into()).sqlstate(), None);
    /// ```
    pub fn sqlstate(&self) -> Option<String> {
        match self {
            Self::Postgres(error) => error.code().map(|code| code.code().to_owned()),
            Self::Mysql(mysql_async::Error::Server(error)) => Some(error.state.clone()),
            Self::Connection(ConnectionError::CouldntSetupConfiguration(error))
            | Self::Query(error) => query_sqlstate(error),
            _ => None,
        }
    }
}

fn mysql_class(error: &mysql_async::Error) -> ErrorClass {
    match error {
        mysql_async::Error::Server(error) => classify::mysql_error(error.code),
        mysql_async::Error::Url(_) => ErrorClass::Permanent,
        _ => ErrorClass::Transient,
    }
}

fn connection_class(error: &ConnectionError) -> ErrorClass {
    match error {
        ConnectionError::InvalidConnectionUrl(_) | ConnectionError::InvalidCString(_) => {
            ErrorClass::Permanent
        }
        ConnectionError::CouldntSetupConfiguration(error) => query_class(error),
        ConnectionError::BadConnection(message) => {
            let message = message.to_ascii_lowercase();
            let permanent = [
                "unable to open database file",
                "file is not a database",
                "database disk image is malformed",
                "readonly database",
                "no such file",
            ];
            if permanent.iter().any(|known| message.contains(known)) {
                ErrorClass::Permanent
            } else {
                ErrorClass::Transient
            }
        }
        _ => ErrorClass::Transient,
    }
}

fn query_class(error: &QueryError) -> ErrorClass {
    match error {
        QueryError::DatabaseError(kind, info) => match kind {
            DatabaseErrorKind::SerializationFailure
            | DatabaseErrorKind::ClosedConnection
            | DatabaseErrorKind::UnableToSendCommand => ErrorClass::Transient,
            _ => match info.sqlstate() {
                Some(state) => classify::postgres_sqlstate(state.as_str()),
                None => ErrorClass::Transient,
            },
        },
        QueryError::BrokenTransactionManager => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

fn query_sqlstate(error: &QueryError) -> Option<String> {
    match error {
        QueryError::DatabaseError(_, info) => {
            info.sqlstate().map(|state| state.as_str().to_owned())
        }
        _ => None,
    }
}

impl fmt::Display for DieselError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(message) => write!(f, "invalid configuration: {message}"),
            Self::Io { addr, source } => write!(f, "cannot reach the database at {addr}: {source}"),
            Self::Postgres(error) => error.fmt(f),
            Self::Mysql(mysql_async::Error::Server(error)) => {
                write!(
                    f,
                    "MySQL error {} ({}): {}",
                    error.code, error.state, error.message
                )?;
                match classify::mysql_error_meaning(error.code) {
                    Some(meaning) => write!(f, " ({meaning})"),
                    None => Ok(()),
                }
            }
            Self::Mysql(error) => write!(f, "MySQL: {}", with_causes(error)),
            Self::Connection(ConnectionError::CouldntSetupConfiguration(error)) => {
                write!(f, "the new session's setup failed: {}", QueryDisplay(error))
            }
            Self::Connection(error) => write!(f, "cannot connect: {error}"),
            Self::Query(error) => QueryDisplay(error).fmt(f),
            Self::Credentials(error) => {
                write!(
                    f,
                    "the credentials provider failed: {}",
                    with_causes(&**error)
                )
            }
        }
    }
}

/// A diesel query error with its SQLSTATE and what it means.
struct QueryDisplay<'a>(&'a QueryError);

impl fmt::Display for QueryDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        if let Some(code) = query_sqlstate(self.0) {
            write!(f, " (SQLSTATE {code}")?;
            if let Some(meaning) = classify::postgres_sqlstate_meaning(&code) {
                write!(f, ": {meaning}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl std::error::Error for DieselError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::Postgres(error) => Some(error),
            Self::Mysql(error) => Some(error),
            Self::Connection(error) => Some(error),
            Self::Query(error) => Some(error),
            Self::Credentials(error) => Some(&**error),
            Self::Config(_) => None,
        }
    }
}

/// A configuration error stays [`DieselError::Config`] and a failed
/// credentials provider [`DieselError::Credentials`]; anything else is
/// [`DieselError::Postgres`], keeping its class.
impl From<PgError> for DieselError {
    fn from(error: PgError) -> Self {
        match error {
            PgError::Config(message) => Self::Config(message),
            PgError::Credentials(cause) => Self::Credentials(cause),
            error => Self::Postgres(error),
        }
    }
}

impl From<QueryError> for DieselError {
    fn from(error: QueryError) -> Self {
        Self::Query(error)
    }
}

impl From<ConnectionError> for DieselError {
    fn from(error: ConnectionError) -> Self {
        Self::Connection(error)
    }
}

/// Whether `error`, or an error behind it, is a conflict a retry of the
/// whole transaction resolves: a serialization failure (PostgreSQL
/// `40001`, MySQL 1213 deadlock: diesel's
/// `DatabaseErrorKind::SerializationFailure`), a PostgreSQL deadlock
/// (`40P01`), or a MySQL lock wait timeout (1205, which diesel reports
/// with kind `Unknown`: recognized by its message), or SQLite's
/// `SQLITE_BUSY` / `SQLITE_LOCKED` (another connection's lock or a stale
/// snapshot: diesel reports "database is locked" or "database table is
/// locked", kind `Unknown`).
///
/// ```
/// use diesel::result::{DatabaseErrorKind, Error};
/// let conflict = Error::DatabaseError(DatabaseErrorKind::SerializationFailure, Box::new("could not serialize".to_string()));
/// assert!(tidewater_diesel::is_conflict(&conflict));
/// assert!(!tidewater_diesel::is_conflict(&Error::NotFound));
/// ```
pub fn is_conflict(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        let query = error.downcast_ref::<QueryError>().or_else(|| {
            match error.downcast_ref::<DieselError>() {
                Some(DieselError::Query(query)) => Some(query),
                _ => None,
            }
        });
        if let Some(QueryError::DatabaseError(kind, info)) = query {
            let state = info.sqlstate();
            let state = state.as_ref().map(|state| state.as_str());
            if matches!(kind, DatabaseErrorKind::SerializationFailure)
                || matches!(state, Some("40001" | "40P01"))
                || info.message().starts_with("Lock wait timeout exceeded")
                || info.message() == "database is locked"
                || info.message().starts_with("database table is locked")
            {
                return true;
            }
        }
        next = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diesel_connection_errors_are_classified() {
        let url = ConnectionError::InvalidConnectionUrl("bad".into());
        assert_eq!(DieselError::from(url).class(), ErrorClass::Permanent);
        let missing =
            ConnectionError::BadConnection("unable to open database file: /x/y.db".into());
        assert_eq!(DieselError::from(missing).class(), ErrorClass::Permanent);
        let other = ConnectionError::BadConnection("connection reset by peer".into());
        assert_eq!(DieselError::from(other).class(), ErrorClass::Transient);
        let closed = QueryError::DatabaseError(
            DatabaseErrorKind::ClosedConnection,
            Box::new(String::from("closed")),
        );
        assert_eq!(DieselError::from(closed).class(), ErrorClass::Transient);
    }

    #[test]
    fn postgres_errors_keep_their_class_and_words() {
        let config = DieselError::from(PgError::Config("no host in url x".into()));
        assert!(matches!(config, DieselError::Config(_)), "{config:?}");
        assert_eq!(
            config.to_string(),
            "invalid configuration: no host in url x"
        );
        let sealed = DieselError::from(PgError::Credentials("vault sealed".into()));
        assert!(matches!(sealed, DieselError::Credentials(_)), "{sealed:?}");
        assert_eq!(sealed.class(), ErrorClass::Transient);
        let refused = PgError::Io {
            addr: "127.0.0.1:5432".into(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        let words = refused.to_string();
        let refused = DieselError::from(refused);
        assert!(matches!(refused, DieselError::Postgres(_)), "{refused:?}");
        assert_eq!(refused.class(), ErrorClass::Transient);
        assert_eq!(refused.to_string(), words);
        let standby = DieselError::from(PgError::WrongSessionAttrs("read-only".into()));
        assert_eq!(standby.class(), ErrorClass::Transient);
    }

    #[test]
    fn conflicts_are_found_behind_other_errors() {
        let deadlock = QueryError::DatabaseError(
            DatabaseErrorKind::SerializationFailure,
            Box::new(String::from("Deadlock found when trying to get lock")),
        );
        let wrapped = DieselError::Query(deadlock);
        assert!(is_conflict(&wrapped));
        let lock_wait = QueryError::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new(String::from(
                "Lock wait timeout exceeded; try restarting transaction",
            )),
        );
        assert!(is_conflict(&lock_wait));
        let unique = QueryError::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            Box::new(String::from("dup")),
        );
        assert!(!is_conflict(&unique));
    }
}
