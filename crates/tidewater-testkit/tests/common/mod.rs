//! Helpers shared by the tests that drive real servers.

#![allow(dead_code)] // each test file uses its own share of them

use std::error::Error as _;
use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

/// The bound on any single wait of a test: generous, never reached when
/// things work.
pub const BOUND: Duration = Duration::from_secs(30);

/// How long a test waits to see that something has *not* happened yet.
pub const STILL_PENDING: Duration = Duration::from_millis(500);

/// A connection's background task; ends with the error that closed it.
pub type Driver = JoinHandle<Result<(), tokio_postgres::Error>>;

/// Connects to `url`, failing after [`BOUND`].
pub async fn try_connect(url: &str) -> Result<(Client, Driver), tokio_postgres::Error> {
    let (client, connection) = timeout(BOUND, tokio_postgres::connect(url, NoTls))
        .await
        .unwrap_or_else(|_| panic!("connecting to {url} took over {BOUND:?}"))?;
    Ok((client, tokio::spawn(connection)))
}

/// Connects to `url`, which must work.
pub async fn connect(url: &str) -> (Client, Driver) {
    try_connect(url)
        .await
        .unwrap_or_else(|error| panic!("connect to {url}: {error}"))
}

/// Runs `SELECT 1` within [`BOUND`].
pub async fn select_one(client: &Client) -> Result<(), tokio_postgres::Error> {
    timeout(BOUND, client.simple_query("SELECT 1"))
        .await
        .expect("a query within the bound")
        .map(drop)
}

/// The SQLSTATE of a server's error.
pub fn sqlstate(error: &tokio_postgres::Error) -> Option<&SqlState> {
    error.code()
}

/// The kind of the I/O error somewhere behind `error`.
pub fn io_kind(error: &(dyn std::error::Error + 'static)) -> Option<io::ErrorKind> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(io) = error.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        current = error.source();
    }
    None
}

/// The kind of the I/O error behind a tokio-postgres error.
pub fn pg_io_kind(error: &tokio_postgres::Error) -> Option<io::ErrorKind> {
    error.source().and_then(io_kind)
}

/// Awaits `future`, which must finish within [`BOUND`].
pub async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    timeout(BOUND, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {BOUND:?}"))
}

/// Polls `condition` every 10 ms until it holds; panics after [`BOUND`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    bounded(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// A query on an open connection and a new connection, both started while
/// a fault should hold them up.
pub struct Stalled {
    query: JoinHandle<Result<(), tokio_postgres::Error>>,
    connection: JoinHandle<Result<(), tokio_postgres::Error>>,
}

/// Starts a query on `client` and a connection to `url`, and checks that
/// neither completes within [`STILL_PENDING`].
pub async fn stall(client: Client, url: &str, fault: &str) -> Stalled {
    let mut query = tokio::spawn(async move { client.simple_query("SELECT 1").await.map(drop) });
    let url = url.to_owned();
    let connection = tokio::spawn(async move { try_connect(&url).await.map(drop) });
    assert!(
        timeout(STILL_PENDING, &mut query).await.is_err(),
        "{fault}: a query got an answer"
    );
    assert!(
        !connection.is_finished(),
        "{fault}: a new connection completed"
    );
    Stalled { query, connection }
}

impl Stalled {
    /// Both complete, successfully, within [`BOUND`]: call it once the
    /// fault is lifted.
    pub async fn complete(self) {
        bounded("the held query", self.query)
            .await
            .unwrap()
            .unwrap();
        bounded("the held connection", self.connection)
            .await
            .unwrap()
            .unwrap();
    }
}
