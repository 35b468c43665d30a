//! The errors `get()` returns, each naming its cause and whether a retry can help.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::manager::ErrorClass;
use crate::stats::PoolStatus;

/// Why opening a connection failed: the backend's error (or a connect
/// timeout) and whether retrying can help.
///
/// ```
/// use tidewater::{ConnectError, ErrorClass};
/// let error = ConnectError::new(std::io::Error::other("connection refused"), ErrorClass::Transient);
/// assert_eq!(error.to_string(), "connection refused (transient)");
/// ```
#[derive(Clone)]
pub struct ConnectError {
    source: Arc<dyn std::error::Error + Send + Sync>,
    class: ErrorClass,
}

impl ConnectError {
    /// Wraps a backend error with its class.
    pub fn new(source: impl std::error::Error + Send + Sync + 'static, class: ErrorClass) -> Self {
        Self {
            source: Arc::new(source),
            class,
        }
    }

    pub(crate) fn timed_out(after: Duration) -> Self {
        Self::new(ConnectTimedOut(after), ErrorClass::Transient)
    }

    /// New connections that were unusable before they served anyone,
    /// `in_a_row` of them; `how` the last one showed it.
    pub(crate) fn arrived_broken(in_a_row: u32, how: Breakage) -> Self {
        Self::new(ArrivedBroken { in_a_row, how }, ErrorClass::Transient)
    }

    /// Transient (worth retrying) or permanent.
    pub fn class(&self) -> ErrorClass {
        self.class
    }

    /// The backend's own error.
    pub fn cause(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.source
    }
}

impl fmt::Debug for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectError")
            .field("class", &self.class)
            .field("cause", &self.source.to_string())
            .finish()
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.source, self.class)
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// A connection attempt that outlived `connect_timeout`.
#[derive(Debug)]
struct ConnectTimedOut(Duration);

impl fmt::Display for ConnectTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connection attempt timed out after {:?}", self.0)
    }
}

impl std::error::Error for ConnectTimedOut {}

/// How a new connection turned out unusable before it served anyone.
#[derive(Debug)]
pub(crate) enum Breakage {
    /// The manager reported it broken when it arrived (or at its first
    /// checkout).
    OnArrival,
    /// Its first validation failed, with this error.
    FirstValidation(String),
    /// It came back broken from its first checkout.
    FirstUse,
}

/// New connections that were unusable before they served anyone: the
/// server (or a proxy or pooler in front of it) accepts sessions and drops
/// them.
#[derive(Debug)]
struct ArrivedBroken {
    in_a_row: u32,
    how: Breakage,
}

impl fmt::Display for ArrivedBroken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.how {
            Breakage::OnArrival => "arrived broken",
            Breakage::FirstValidation(_) => "failed its first validation",
            Breakage::FirstUse => "broke in its first use",
        };
        if self.in_a_row == 1 {
            write!(f, "a new connection {what}")?;
        } else {
            write!(f, "every new connection {what}, {} in a row", self.in_a_row)?;
        }
        if let Breakage::FirstValidation(error) = &self.how {
            let label = if self.in_a_row == 1 { ": " } else { "; last: " };
            write!(f, "{label}{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ArrivedBroken {}

/// Why `get()` returned no connection.
///
/// Every variant carries what an operator needs: the pool's state at that
/// moment and, where the database is at fault, its last error.
/// [`is_retryable`](Error::is_retryable) tells whether trying again later
/// can help.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # use tidewater_testkit::ScriptedManager;
/// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
/// pool.close().await;
/// let error = pool.get().await.unwrap_err();
/// assert!(matches!(error, tidewater::Error::Closed { .. }));
/// assert!(!error.is_retryable());
/// # }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Error {
    /// No connection became available within `acquire_timeout`.
    Timeout {
        /// How long the caller waited.
        waited: Duration,
        /// The pool at the moment it gave up.
        status: PoolStatus,
        /// The last failed connection attempt, when the database is the
        /// reason no connection came.
        last_connect_error: Option<ConnectError>,
    },
    /// The circuit breaker is open: the database has been unreachable for
    /// several attempts in a row, so the call failed at once instead of
    /// queueing.
    Unavailable {
        /// The failure that keeps the breaker open.
        cause: ConnectError,
        /// Consecutive failed connection attempts.
        failures: u32,
        /// When the background probe tries the database next.
        retry_after: Duration,
        /// The pool at that moment.
        status: PoolStatus,
    },
    /// `max_waiters` callers already wait for a connection to come back,
    /// and the pool is at its size.
    QueueFull {
        /// The pool at that moment.
        status: PoolStatus,
    },
    /// [`try_get`](crate::Pool::try_get) found no idle connection.
    NoIdleConnection {
        /// The pool at that moment.
        status: PoolStatus,
    },
    /// The pool was closed.
    Closed {
        /// The pool's name.
        pool: Arc<str>,
    },
    /// Opening a connection failed with an error retrying cannot fix (bad
    /// password, unknown database).
    Connect(ConnectError),
}

impl Error {
    /// A short name for the kind of error, for traces and logs: `timeout`,
    /// `unavailable`, `queue_full`, `no_idle_connection`, `closed` or
    /// `connect`.
    ///
    /// ```
    /// let error = tidewater::Error::Closed { pool: "orders".into() };
    /// assert_eq!(error.kind(), "closed");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::Unavailable { .. } => "unavailable",
            Self::QueueFull { .. } => "queue_full",
            Self::NoIdleConnection { .. } => "no_idle_connection",
            Self::Closed { .. } => "closed",
            Self::Connect(_) => "connect",
        }
    }

    /// Whether trying again later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout { .. }
            | Self::Unavailable { .. }
            | Self::QueueFull { .. }
            | Self::NoIdleConnection { .. } => true,
            Self::Closed { .. } => false,
            Self::Connect(error) => error.class().is_transient(),
        }
    }

    /// When a retry is worth making, where the pool knows: the time until
    /// the breaker's next probe.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The pool's status when the error happened, where the error has one.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tidewater_testkit::ScriptedManager;
    /// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
    /// let config = tidewater::PoolConfig { max_size: 1, max_waiters: 0, ..Default::default() };
    /// let pool = tidewater::Pool::new(ScriptedManager::new(), config).unwrap();
    /// let _held = pool.get().await.unwrap();
    /// let error = pool.get().await.unwrap_err();
    /// assert!(error.is_retryable());
    /// assert_eq!(error.retry_after(), None);
    /// assert_eq!(error.status().unwrap().in_use, 1);
    /// # }
    /// ```
    pub fn status(&self) -> Option<&PoolStatus> {
        match self {
            Self::Timeout { status, .. }
            | Self::Unavailable { status, .. }
            | Self::QueueFull { status }
            | Self::NoIdleConnection { status } => Some(status),
            Self::Closed { .. } | Self::Connect(_) => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout {
                waited,
                status,
                last_connect_error,
            } => {
                write!(
                    f,
                    "timed out after {waited:?} waiting for a connection ({status})"
                )?;
                if let Some(error) = last_connect_error {
                    write!(f, "; last connection error: {error}")?;
                }
                Ok(())
            }
            Self::Unavailable {
                cause,
                failures,
                retry_after,
                status,
            } => write!(
                f,
                "database unavailable: {failures} connection attempts in a row failed, \
                 last with: {cause}; failing fast, next attempt in {retry_after:?} ({status})"
            ),
            Self::QueueFull { status } => {
                write!(f, "too many callers waiting for a connection ({status})")
            }
            Self::NoIdleConnection { status } => {
                write!(f, "no idle connection ({status})")
            }
            Self::Closed { pool } => write!(f, "pool {pool:?} is closed"),
            Self::Connect(error) => write!(f, "cannot connect to the database: {error}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Timeout {
                last_connect_error: Some(error),
                ..
            } => Some(error),
            Self::Unavailable { cause, .. } => Some(cause),
            Self::Connect(error) => Some(error),
            _ => None,
        }
    }
}
