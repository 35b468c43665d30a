//! The trait a database backend implements.

use std::future::Future;

/// Whether retrying a failed operation can help.
///
/// ```
/// use tidewater::ErrorClass;
/// assert!(ErrorClass::Transient.is_transient() && ErrorClass::Full.is_transient());
/// assert_eq!(ErrorClass::Permanent.to_string(), "permanent");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorClass {
    /// Worth retrying: refused, reset, server starting or shutting down,
    /// a timeout. The database is down for now.
    Transient,
    /// Worth retrying: the server is up but has no room for another
    /// connection ("too many clients"). The pool's open connections still
    /// work, so callers wait for them rather than fail fast.
    Full,
    /// Retrying cannot help: bad password, unknown database or role.
    /// Callers waiting for a connection get the error at once.
    Permanent,
}

impl ErrorClass {
    /// `true` for [`ErrorClass::Transient`] and [`ErrorClass::Full`].
    pub fn is_transient(self) -> bool {
        self != Self::Permanent
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Transient => "transient",
            Self::Full => "full",
            Self::Permanent => "permanent",
        })
    }
}

/// Opens, checks and resets connections for a [`Pool`](crate::Pool).
///
/// Only [`connect`](Manager::connect) and [`validate`](Manager::validate) are
/// required. The pool bounds every call with its own timeouts, so an
/// implementation does not need to.
///
/// ```
/// use std::convert::Infallible;
/// use tidewater::Manager;
///
/// /// Connections that are just numbers.
/// struct Numbers;
///
/// impl Manager for Numbers {
///     type Connection = u64;
///     type Error = Infallible;
///
///     async fn connect(&self) -> Result<u64, Infallible> {
///         Ok(42)
///     }
///
///     async fn validate(&self, _conn: &mut u64) -> Result<(), Infallible> {
///         Ok(())
///     }
/// }
/// ```
pub trait Manager: Send + Sync + 'static {
    /// The connection type the pool hands out.
    type Connection: Send + 'static;
    /// The error `connect`, `validate` and `reset` return.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens a new connection.
    fn connect(&self) -> impl Future<Output = Result<Self::Connection, Self::Error>> + Send;

    /// Checks that a connection still works, typically with a ping or an
    /// empty query. Called on checkout when the connection was idle longer
    /// than `validate_after`, and by keepalive.
    fn validate(
        &self,
        conn: &mut Self::Connection,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// A cheap, synchronous check that a connection is beyond use (its socket
    /// closed, its protocol state lost). Called on every return and checkout:
    /// it must not block or do I/O. A broken connection is discarded.
    fn is_broken(&self, conn: &mut Self::Connection) -> bool {
        let _ = conn;
        false
    }

    /// A cheap, synchronous check, on return, whether the connection carries
    /// session state (an open transaction, say) that
    /// [`reset`](Manager::reset) must clear before the next checkout.
    fn needs_reset(&self, conn: &mut Self::Connection) -> bool {
        let _ = conn;
        false
    }

    /// Clears session state before a connection is reused. Called on
    /// checkout when [`needs_reset`](Manager::needs_reset) said so; a failure
    /// discards the connection.
    fn reset(
        &self,
        conn: &mut Self::Connection,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = conn;
        std::future::ready(Ok(()))
    }

    /// Tells whether an error from [`connect`](Manager::connect) is worth
    /// retrying. Permanent errors reach waiting callers at once.
    fn classify(&self, error: &Self::Error) -> ErrorClass {
        let _ = error;
        ErrorClass::Transient
    }
}
