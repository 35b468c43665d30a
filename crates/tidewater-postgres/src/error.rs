//! The backend's error, and which failures are worth retrying.

use std::fmt;
use std::io;
use std::time::Duration;

use tidewater::ErrorClass;
use tidewater::classify::{self, with_causes};
use tokio_postgres::error::SqlState;

use crate::tls::is_tls_failure;

/// What went wrong talking to PostgreSQL. Its message names the cause in
/// words an operator can act on, and never contains a password.
///
/// ```
/// use tidewater_postgres::PgError;
/// let error = PgError::Config("invalid port".into());
/// assert_eq!(error.to_string(), "invalid PostgreSQL configuration: invalid port");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum PgError {
    /// An error from the server or the driver.
    Postgres(tokio_postgres::Error),
    /// A socket could not be opened.
    Io {
        /// The address tried.
        addr: String,
        /// The socket error.
        source: io::Error,
    },
    /// The connection settings are wrong (this never fixes itself).
    Config(String),
    /// The server is a standby, or a primary, where
    /// `target_session_attrs` asked for the other.
    WrongSessionAttrs(String),
    /// A query outlived the statement timeout and was cancelled on the
    /// server.
    QueryTimeout {
        /// The statement timeout.
        after: Duration,
        /// Whether the connection survived the cancel (it is discarded if not).
        connection_kept: bool,
    },
    /// A statement of [`PgOptions::setup_sql`](crate::PgOptions::setup_sql)
    /// failed on a new (or just reset) connection, which was dropped. Its
    /// class is that of the statement's error: one the server rejects
    /// (syntax, unknown setting) is permanent, a lost connection transient.
    ///
    /// ```
    /// use tidewater::ErrorClass;
    /// use tidewater_postgres::PgError;
    /// let error = PgError::Setup {
    ///     statement: "SET search_path = app".into(),
    ///     source: Box::new(PgError::Config("x".into())),
    /// };
    /// assert!(error.to_string().starts_with("setup statement `SET search_path = app` failed: "));
    /// assert_eq!(error.class(), ErrorClass::Permanent);
    /// ```
    Setup {
        /// The statement, as configured.
        statement: String,
        /// Its error.
        source: Box<PgError>,
    },
    /// The [`CredentialsProvider`](tidewater::credentials::CredentialsProvider)
    /// given to [`PgManager::with_credentials`](crate::PgManager::with_credentials)
    /// failed; the pool retries (transient).
    ///
    /// ```
    /// use tidewater::ErrorClass;
    /// use tidewater_postgres::PgError;
    /// let error = PgError::Credentials("vault sealed".into());
    /// assert_eq!(error.to_string(), "could not get credentials: vault sealed");
    /// assert_eq!(error.class(), ErrorClass::Transient);
    /// ```
    Credentials(tidewater::credentials::BoxError),
}

impl PgError {
    /// The SQLSTATE code, when the server sent one.
    ///
    /// ```
    /// # use tidewater_postgres::PgError;
    /// assert!(PgError::Config("x".into()).code().is_none());
    /// ```
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            Self::Postgres(error) => error.code(),
            Self::Setup { source, .. } => source.code(),
            _ => None,
        }
    }

    /// Transient (retrying can help) or permanent.
    ///
    /// ```
    /// # use tidewater_postgres::PgError;
    /// use tidewater::ErrorClass;
    /// let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    /// let error = PgError::Io { addr: "127.0.0.1:5432".into(), source: refused };
    /// assert_eq!(error.class(), ErrorClass::Transient);
    /// assert_eq!(PgError::Config("bad".into()).class(), ErrorClass::Permanent);
    /// ```
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Io { .. }
            | Self::WrongSessionAttrs(_)
            | Self::QueryTimeout { .. }
            | Self::Credentials(_) => ErrorClass::Transient,
            Self::Setup { source, .. } => source.class(),
            Self::Config(_) => ErrorClass::Permanent,
            Self::Postgres(error) => match error.code() {
                Some(code) => classify::postgres_sqlstate(code.code()),
                None if is_tls_failure(error) => ErrorClass::Permanent,
                None => ErrorClass::Transient,
            },
        }
    }
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Postgres(error) => match error.as_db_error() {
                Some(db) => {
                    write!(
                        f,
                        "{}: {} (SQLSTATE {}",
                        db.severity(),
                        db.message(),
                        db.code().code()
                    )?;
                    if let Some(meaning) = classify::postgres_sqlstate_meaning(db.code().code()) {
                        write!(f, ": {meaning}")?;
                    }
                    f.write_str(")")
                }
                None => f.write_str(&with_causes(error)),
            },
            Self::Io { addr, source } => write!(f, "cannot reach PostgreSQL at {addr}: {source}"),
            Self::Config(message) => write!(f, "invalid PostgreSQL configuration: {message}"),
            Self::WrongSessionAttrs(message) => write!(f, "{message}"),
            Self::QueryTimeout {
                after,
                connection_kept,
            } => {
                write!(f, "query cancelled after the statement timeout ({after:?})")?;
                if !*connection_kept {
                    f.write_str(
                        "; the server did not answer the cancel, so the connection was discarded",
                    )?;
                }
                Ok(())
            }
            Self::Setup { statement, source } => {
                write!(f, "setup statement `{statement}` failed: {source}")
            }
            Self::Credentials(cause) => {
                write!(f, "could not get credentials: {}", with_causes(&**cause))
            }
        }
    }
}

impl std::error::Error for PgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Postgres(error) => Some(error),
            Self::Io { source, .. } => Some(source),
            Self::Setup { source, .. } => Some(&**source),
            Self::Credentials(cause) => Some(&**cause),
            _ => None,
        }
    }
}

impl From<tokio_postgres::Error> for PgError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Postgres(error)
    }
}
