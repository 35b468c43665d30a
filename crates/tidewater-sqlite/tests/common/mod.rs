//! What the backend's test files share.

#![allow(dead_code)] // each test file uses a part

use tidewater_sqlite::SqliteError;

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
