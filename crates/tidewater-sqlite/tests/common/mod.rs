//! What the backend's test files share.

#![allow(dead_code)] // each test file uses a part

use std::time::Duration;

use tidewater_sqlite::SqliteError;

/// Room for a loaded 2-core machine, added to every bound a test derives
/// from the configuration. A bound turns a hang into a failure that says
/// what did not happen; it never measures a speed.
pub const SLACK: Duration = Duration::from_secs(5);

/// How often [`eventually`] looks.
const POLL: Duration = Duration::from_millis(10);

/// Awaits `future`; fails the test, naming `what`, if it has not ended
/// within `bound`.
pub async fn within<F: Future>(what: &str, bound: Duration, future: F) -> F::Output {
    tokio::time::timeout(bound, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {bound:?}"))
}

/// Polls `done` until it holds; fails the test, naming `what`, if it has
/// not within `bound`. Only for a state that, once reached, lasts until the
/// test moves on, so that a late look cannot miss it.
pub async fn eventually(what: &str, bound: Duration, mut done: impl FnMut() -> bool) {
    within(what, bound, async {
        while !done() {
            tokio::time::sleep(POLL).await;
        }
    })
    .await;
}

/// An application's error, as the transaction helper wants one: made from
/// the pool's, the connection's and SQLite's errors, which stay reachable
/// through `source()` (where the helper looks for `SQLITE_BUSY`).
#[derive(Debug)]
pub struct AppError(Box<dyn std::error::Error + Send + Sync>);

impl AppError {
    /// The application's own refusal.
    pub fn refused() -> Self {
        Self("refused by the application".into())
    }
}

impl From<tidewater::Error> for AppError {
    fn from(error: tidewater::Error) -> Self {
        Self(error.into())
    }
}

impl From<SqliteError> for AppError {
    fn from(error: SqliteError) -> Self {
        Self(error.into())
    }
}

impl From<rusqlite::Error> for AppError {
    fn from(error: rusqlite::Error) -> Self {
        Self(error.into())
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for AppError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}
