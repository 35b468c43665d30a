//! [`FaultError`]: why a fault could not be injected, or its server not
//! restored.

use std::io;

/// Why a fault could not be injected, or the server it broke did not come
/// back. The underlying error, where there is one, is the
/// [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FaultError {
    /// A control of the private server failed: `pg_ctl`, a signal, `psql`.
    #[error("a control of the private server failed")]
    Cluster(#[from] io::Error),
    /// A session of the side client could not connect, or its query failed.
    #[error("the side client failed")]
    SideClient(#[from] tokio_postgres::Error),
    /// `SHOW max_connections` printed something other than a number.
    #[error("SHOW max_connections printed no number")]
    MaxConnections(#[source] std::num::ParseIntError),
    /// The server had no free slot for a session the fault needs; the
    /// text says which.
    #[error("the server is full: {0}")]
    Full(&'static str),
    /// The server did not reach the state the fault waits for within its
    /// bound; the text says which, and the bound.
    #[error("{0}")]
    TimedOut(String),
    /// The server or a side session did what the fault does not expect.
    #[error("{0}")]
    Unexpected(String),
    /// A CPU hog's task ended without its query's result (it panicked).
    #[error("a CPU hog's task failed")]
    Task(#[from] tokio::task::JoinError),
}
