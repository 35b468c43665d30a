//! The backend's error, and which failures are worth retrying.

use std::fmt;
use std::io;
use std::time::Duration;

use mysql_async::{DriverError, IoError};
use tidewater::ErrorClass;
use tidewater::classify;

/// Client error code for a server that cannot be reached (`CR_CONN_HOST_ERROR`).
pub(crate) const CANNOT_CONNECT: u16 = 2003;
/// Client error code for a connection lost during a query (`CR_SERVER_LOST`).
pub(crate) const LOST_CONNECTION: u16 = 2013;
/// Client error code for a connection that was already closed (`CR_SERVER_GONE_ERROR`).
pub(crate) const SERVER_GONE: u16 = 2006;
/// `ER_LOCK_DEADLOCK`: the server rolled the transaction back.
pub(crate) const DEADLOCK: u16 = 1213;
/// `ER_LOCK_WAIT_TIMEOUT`: the statement (not the transaction) was rolled back.
pub(crate) const LOCK_WAIT_TIMEOUT: u16 = 1205;
/// MariaDB's `ER_STATEMENT_TIMEOUT` (`max_statement_time` exceeded).
pub(crate) const MARIADB_STATEMENT_TIMEOUT: u16 = 1969;
/// MySQL's `ER_QUERY_TIMEOUT` (`max_execution_time` exceeded).
pub(crate) const MYSQL_STATEMENT_TIMEOUT: u16 = 3024;

/// What went wrong talking to MySQL or MariaDB. Its message names the cause
/// with the MySQL error code, in words an operator can act on, and never
/// contains a password.
///
/// ```
/// use tidewater_mysql::MySqlError;
/// let error = MySqlError::Config("invalid port".into());
/// assert_eq!(error.to_string(), "invalid MySQL configuration: invalid port");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum MySqlError {
    /// An error from the server (with its code) or the driver.
    MySql(mysql_async::Error),
    /// The server could not be reached or dropped the connection while it
    /// was being opened.
    Unreachable {
        /// The address tried, `host:port`.
        addr: String,
        /// The socket error.
        source: io::Error,
    },
    /// The TLS handshake failed: the server's certificate does not verify
    /// (unknown issuer, another name, expired) or the two sides agree on
    /// no protocol. Retrying cannot help.
    Tls {
        /// The address tried, `host:port`.
        addr: String,
        /// The handshake's error.
        source: io::Error,
    },
    /// The connection settings are wrong (this never fixes itself).
    Config(String),
    /// A query outlived the statement timeout and was stopped, by the
    /// server's own timer or by a `KILL QUERY` from a second connection.
    /// As with any timeout, a statement that was just finishing may still
    /// have taken effect.
    QueryTimeout {
        /// The statement timeout.
        after: Duration,
        /// Whether the connection survived (it is discarded if not).
        connection_kept: bool,
    },
    /// A statement of [`MySqlOptions::setup_sql`](crate::MySqlOptions::setup_sql)
    /// failed on a new (or just reset) connection, which was dropped. One
    /// the server rejects (syntax, unknown variable, no privilege) is
    /// permanent; a lost connection, a lock wait or a deadlock transient.
    ///
    /// ```
    /// use tidewater::ErrorClass;
    /// use tidewater_mysql::MySqlError;
    /// let syntax = mysql_async::Error::Server(mysql_async::ServerError {
    ///     code: 1064, message: "You have an error in your SQL syntax".into(), state: "42000".into(),
    /// });
    /// let error = MySqlError::Setup { statement: "SETT x = 1".into(), source: Box::new(syntax.into()) };
    /// assert_eq!(error.to_string(), "setup statement `SETT x = 1` failed: You have an error in your SQL syntax (MySQL 1064)");
    /// assert_eq!(error.class(), ErrorClass::Permanent);
    /// ```
    Setup {
        /// The statement, as configured.
        statement: String,
        /// Its error.
        source: Box<MySqlError>,
    },
    /// The [`CredentialsProvider`](tidewater::credentials::CredentialsProvider)
    /// given to [`MySqlManager::with_credentials`](crate::MySqlManager::with_credentials)
    /// failed; the pool retries (transient).
    ///
    /// ```
    /// use tidewater::ErrorClass;
    /// use tidewater_mysql::MySqlError;
    /// let error = MySqlError::Credentials("vault sealed".into());
    /// assert_eq!(error.to_string(), "could not get credentials: vault sealed");
    /// assert_eq!(error.class(), ErrorClass::Transient);
    /// ```
    Credentials(tidewater::credentials::BoxError),
}

impl MySqlError {
    /// The MySQL error code: the server's, or the client's `2003` (cannot
    /// connect), `2013` (lost connection) and `2006` (server gone away) for
    /// a socket that could not be opened, failed, or was already closed.
    ///
    /// ```
    /// # use tidewater_mysql::MySqlError;
    /// let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
    /// assert_eq!(MySqlError::from(mysql_async::Error::from(reset)).code(), Some(2013));
    /// assert!(MySqlError::Config("x".into()).code().is_none());
    /// ```
    pub fn code(&self) -> Option<u16> {
        match self {
            Self::MySql(error) => code_of(error),
            Self::Unreachable { .. } => Some(CANNOT_CONNECT),
            Self::Setup { source, .. } => source.code(),
            _ => None,
        }
    }

    /// Transient (retrying can help) or permanent.
    ///
    /// ```
    /// # use tidewater_mysql::MySqlError;
    /// use tidewater::ErrorClass;
    /// let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    /// let error = MySqlError::Unreachable { addr: "127.0.0.1:3306".into(), source: refused };
    /// assert_eq!(error.class(), ErrorClass::Transient);
    /// assert_eq!(MySqlError::Config("bad".into()).class(), ErrorClass::Permanent);
    /// ```
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Unreachable { .. } | Self::QueryTimeout { .. } | Self::Credentials(_) => {
                ErrorClass::Transient
            }
            Self::Config(_) | Self::Tls { .. } => ErrorClass::Permanent,
            Self::MySql(error) => driver_class(error),
            Self::Setup { source, .. } => match &**source {
                // Unless the server refused the statement itself, which it
                // will do again: permanent.
                Self::MySql(mysql_async::Error::Server(server)) => {
                    classify::mysql_setup_error(server.code)
                }
                source => source.class(),
            },
        }
    }

    /// Whether the server's lock manager gave up on the statement: a
    /// deadlock (`1213`) or a lock wait timeout (`1205`). Running the
    /// transaction again usually succeeds.
    ///
    /// ```
    /// # use tidewater_mysql::MySqlError;
    /// assert!(!MySqlError::Config("x".into()).is_conflict());
    /// ```
    pub fn is_conflict(&self) -> bool {
        matches!(self.code(), Some(DEADLOCK | LOCK_WAIT_TIMEOUT))
    }

    /// Turns an error from opening a connection to `addr` into one that
    /// says so: TLS handshake failures become [`MySqlError::Tls`], other
    /// socket failures [`MySqlError::Unreachable`].
    pub(crate) fn connecting(error: mysql_async::Error, addr: &str) -> Self {
        let addr = addr.to_owned();
        match error {
            mysql_async::Error::Io(IoError::Io(source)) if is_tls_failure(&source) => {
                Self::Tls { addr, source }
            }
            mysql_async::Error::Io(IoError::Io(source)) => Self::Unreachable { addr, source },
            error => Self::MySql(error),
        }
    }
}

/// Whether a socket error is rustls refusing the handshake (the driver
/// passes it on as an I/O error).
fn is_tls_failure(error: &io::Error) -> bool {
    #[cfg(feature = "rustls")]
    return error
        .get_ref()
        .is_some_and(|inner| inner.is::<rustls::Error>());
    #[cfg(not(feature = "rustls"))]
    {
        let _ = error;
        false
    }
}

fn code_of(error: &mysql_async::Error) -> Option<u16> {
    match error {
        mysql_async::Error::Server(server) => Some(server.code),
        mysql_async::Error::Io(IoError::Io(_)) => Some(LOST_CONNECTION),
        mysql_async::Error::Driver(DriverError::ConnectionClosed) => Some(SERVER_GONE),
        _ => None,
    }
}

fn driver_class(error: &mysql_async::Error) -> ErrorClass {
    use mysql_async::Error::{Driver, Io, Other, Server, Url};
    match error {
        Server(server) => classify::mysql_error(server.code),
        Url(_) => ErrorClass::Permanent,
        Io(IoError::Io(_)) | Other(_) => ErrorClass::Transient,
        #[cfg(feature = "rustls")]
        Io(IoError::Tls(_)) => ErrorClass::Permanent,
        Driver(
            DriverError::NoClientSslFlagFromServer
            | DriverError::UnknownAuthPlugin { .. }
            | DriverError::MysqlOldPasswordDisabled
            | DriverError::CleartextPluginDisabled
            | DriverError::CantParseServerVersion { .. },
        ) => ErrorClass::Permanent,
        Driver(_) => ErrorClass::Transient,
    }
}

/// `(MySQL 1045: bad password or user)`, or `(MySQL 1064)` for a code
/// without a known meaning.
struct Code(u16);

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match classify::mysql_error_meaning(self.0) {
            Some(meaning) => write!(f, "(MySQL {}: {meaning})", self.0),
            None => write!(f, "(MySQL {})", self.0),
        }
    }
}

impl fmt::Display for MySqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use mysql_async::Error as E;
        match self {
            Self::MySql(E::Server(server)) => write!(f, "{} {}", server.message, Code(server.code)),
            Self::MySql(E::Io(IoError::Io(source))) => {
                write!(f, "{source} {}", Code(LOST_CONNECTION))
            }
            Self::MySql(E::Driver(DriverError::ConnectionClosed)) => {
                write!(f, "the connection is closed {}", Code(SERVER_GONE))
            }
            Self::MySql(E::Driver(DriverError::NoClientSslFlagFromServer)) => {
                f.write_str("TLS was asked for (require_ssl=true) but the server does not offer it")
            }
            Self::MySql(error) => f.write_str(&chain(error)),
            Self::Unreachable { addr, source } => {
                write!(
                    f,
                    "cannot reach MySQL at {addr}: {source} {}",
                    Code(CANNOT_CONNECT)
                )
            }
            Self::Tls { addr, source } => {
                write!(f, "TLS handshake with MySQL at {addr} failed: {source}")
            }
            Self::Config(message) => write!(f, "invalid MySQL configuration: {message}"),
            Self::QueryTimeout {
                after,
                connection_kept,
            } => {
                write!(f, "query stopped after the statement timeout ({after:?})")?;
                if !*connection_kept {
                    f.write_str("; it did not stop when killed, so the connection was discarded")?;
                }
                Ok(())
            }
            Self::Setup { statement, source } => {
                write!(f, "setup statement `{statement}` failed: {source}")
            }
            Self::Credentials(cause) => {
                write!(f, "could not get credentials: {}", chain(&**cause))
            }
        }
    }
}

/// An error's message and those of the errors behind it that it does not
/// already repeat ("TLS error: invalid peer certificate: UnknownIssuer").
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(error.source(), |cause| cause.source()).fold(
        error.to_string(),
        |mut text, cause| {
            let cause = cause.to_string();
            if !text.contains(&cause) {
                text = format!("{text}: {cause}");
            }
            text
        },
    )
}

impl std::error::Error for MySqlError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::MySql(error) => Some(error),
            Self::Unreachable { source, .. } | Self::Tls { source, .. } => Some(source),
            Self::Setup { source, .. } => Some(&**source),
            Self::Credentials(cause) => Some(&**cause),
            _ => None,
        }
    }
}

impl From<mysql_async::Error> for MySqlError {
    fn from(error: mysql_async::Error) -> Self {
        Self::MySql(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: u16, message: &str) -> MySqlError {
        MySqlError::MySql(mysql_async::Error::Server(mysql_async::ServerError {
            code,
            message: message.into(),
            state: "HY000".into(),
        }))
    }

    #[test]
    fn errors_are_classified_by_their_code_or_cause() {
        // The codes themselves: tidewater::classify's table.
        assert_eq!(server(1040, "x").class(), ErrorClass::Full);
        assert_eq!(server(1045, "x").class(), ErrorClass::Permanent);
        assert_eq!(server(1064, "x").class(), ErrorClass::Transient);
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        let lost = MySqlError::from(mysql_async::Error::from(reset));
        assert_eq!(
            (lost.code(), lost.class()),
            (Some(2013), ErrorClass::Transient)
        );
        let closed = MySqlError::from(mysql_async::Error::Driver(DriverError::ConnectionClosed));
        assert_eq!(
            (closed.code(), closed.class()),
            (Some(2006), ErrorClass::Transient)
        );
        // A setup statement the server refuses fails for good; one that
        // met a deadlock or a lost connection is retried.
        let setup = |source: MySqlError| MySqlError::Setup {
            statement: "SET x = 1".into(),
            source: Box::new(source),
        };
        assert_eq!(setup(server(1064, "x")).class(), ErrorClass::Permanent);
        assert_eq!(setup(server(1213, "x")).class(), ErrorClass::Transient);
        assert_eq!(setup(server(1040, "x")).class(), ErrorClass::Full);
        assert_eq!(setup(lost).class(), ErrorClass::Transient);
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let error = MySqlError::connecting(refused.into(), "127.0.0.1:1");
        assert_eq!(error.class(), ErrorClass::Transient);
        assert_eq!(
            error.to_string(),
            format!(
                "cannot reach MySQL at 127.0.0.1:1: {} (MySQL 2003: cannot connect)",
                io::Error::from(io::ErrorKind::ConnectionRefused)
            )
        );
    }

    #[test]
    fn messages_say_which() {
        assert_eq!(
            server(
                1045,
                "Access denied for user 'x'@'localhost' (using password: YES)"
            )
            .to_string(),
            "Access denied for user 'x'@'localhost' (using password: YES) (MySQL 1045: bad password or user)"
        );
        assert_eq!(
            server(1064, "You have an error in your SQL syntax").to_string(),
            "You have an error in your SQL syntax (MySQL 1064)"
        );
        let closed = MySqlError::from(mysql_async::Error::Driver(DriverError::ConnectionClosed));
        assert_eq!(
            closed.to_string(),
            "the connection is closed (MySQL 2006: server has gone away)"
        );
        assert!(server(1213, "Deadlock found").is_conflict());
        assert!(server(1205, "Lock wait timeout exceeded").is_conflict());
    }
}
