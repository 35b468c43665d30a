//! What each diesel-async connection type needs from this crate: how to
//! open it with typed errors, how to ping it, whether its server session
//! may be inside a transaction, how to roll that back.

use std::future::Future;

use diesel::QueryResult;
use diesel_async::AsyncConnection;
use diesel_async::pooled_connection::PoolableConnection;
use tidewater::credentials::Credentials;

use crate::error::DieselError;

/// A diesel-async connection type this crate can pool:
/// [`AsyncPgConnection`](diesel_async::AsyncPgConnection),
/// [`AsyncMysqlConnection`](diesel_async::AsyncMysqlConnection),
/// [`AsyncMariadbConnection`](diesel_async::AsyncMariadbConnection) and
/// [`SyncConnectionWrapper<SqliteConnection>`](diesel_async::sync_connection_wrapper::SyncConnectionWrapper).
///
/// Sealed: opening a connection with typed errors, and knowing whether a
/// returned session is clean, depend on each driver, so this is not a
/// blanket implementation over every `AsyncConnection`.
///
/// ```
/// fn poolable<C: tidewater_diesel::Driver>() {}
/// poolable::<diesel_async::AsyncPgConnection>();
/// poolable::<diesel_async::AsyncMysqlConnection>();
/// ```
pub trait Driver: sealed::Open + AsyncConnection + PoolableConnection + Send + 'static {}

impl<C: sealed::Open + AsyncConnection + PoolableConnection + Send + 'static> Driver for C {}

pub(crate) mod sealed {
    use super::*;

    /// The driver-specific half of [`Driver`](super::Driver).
    pub trait Open: Sized {
        /// The parsed URL.
        type Target: Clone + Send + Sync + 'static;
        /// What the pool keeps beside the connection.
        type Extra: Send + 'static;
        /// The database's name, for messages.
        const DATABASE: &'static str;
        /// Whether the database takes a user and password.
        const CREDENTIALS: bool;

        /// Parses a URL, naming what is wrong (password redacted).
        fn parse(url: &str) -> Result<Self::Target, DieselError>;

        /// Opens a connection, with `credentials` when given.
        fn open(
            target: &Self::Target,
            credentials: Option<&Credentials>,
        ) -> impl Future<Output = Result<(Self, Self::Extra), DieselError>> + Send;

        /// The cheapest round trip that proves the session works.
        fn check(conn: &mut Self) -> impl Future<Output = QueryResult<()>> + Send;

        /// The socket is closed or the session lost (no I/O).
        fn is_closed(conn: &mut Self, extra: &Self::Extra) -> bool;

        /// The server session may be inside a transaction, or an answer
        /// may still be pending (no I/O: `true` when it cannot be known).
        fn may_be_dirty(conn: &mut Self, extra: &Self::Extra) -> bool;

        /// Rolls back whatever transaction the session is in (none: no
        /// error).
        fn rollback(conn: &mut Self) -> impl Future<Output = QueryResult<()>> + Send;
    }
}
