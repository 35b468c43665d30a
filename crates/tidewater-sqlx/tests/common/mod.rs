//! What the test files share.

#![allow(dead_code)] // each test file uses a part

use std::future::Future;

use sqlx::{AssertSqlSafe, Row};
/// The shared MariaDB, and a database of its own there, dropped with the
/// value.
#[allow(unused_imports)] // each test file uses a part
pub use tidewater_testkit::conformance::mariadb::{ADDR as MARIADB, Database as MariaDb};

#[allow(unused_imports)] // each test file uses a part
pub use tidewater_testkit::{POLL_DEADLINE, eventually};

/// Raw SQL on a connection, on the text protocol.
pub trait Sql {
    /// Runs SQL (several statements allowed).
    fn exec(&mut self, sql: &str) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
    /// Runs a query returning one integer.
    fn query_i64(&mut self, sql: &str) -> impl Future<Output = Result<i64, sqlx::Error>> + Send;
}

macro_rules! sql {
    ($conn:ty) => {
        impl Sql for $conn {
            async fn exec(&mut self, sql: &str) -> Result<(), sqlx::Error> {
                sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
                    .execute(self)
                    .await
                    .map(drop)
            }

            async fn query_i64(&mut self, sql: &str) -> Result<i64, sqlx::Error> {
                let row = sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
                    .fetch_one(self)
                    .await?;
                row.try_get_unchecked::<i64, _>(0)
            }
        }
    };
}

sql!(sqlx::PgConnection);
sql!(sqlx::MySqlConnection);
sql!(sqlx::SqliteConnection);

/// Runs SQL on the text protocol.
pub async fn execute<C: Sql>(conn: &mut C, sql: &str) -> Result<(), sqlx::Error> {
    conn.exec(sql).await
}

/// Runs a query returning one integer, on the text protocol.
pub async fn query_i64<C: Sql>(conn: &mut C, sql: &str) -> Result<i64, sqlx::Error> {
    conn.query_i64(sql).await
}

/// An application's error type, as the transaction helper expects one.
#[derive(Debug)]
pub enum AppError {
    /// No connection.
    Pool(tidewater::Error),
    /// The database said no.
    Db(sqlx::Error),
    /// The application said no.
    Refused,
}

impl From<tidewater::Error> for AppError {
    fn from(error: tidewater::Error) -> Self {
        Self::Pool(error)
    }
}

impl From<sqlx::Error> for AppError {
    fn from(error: sqlx::Error) -> Self {
        Self::Db(error)
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pool(error) => write!(f, "{error}"),
            Self::Db(error) => write!(f, "{error}"),
            Self::Refused => f.write_str("refused"),
        }
    }
}

impl std::error::Error for AppError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Db(error) => Some(error),
            Self::Pool(error) => Some(error),
            Self::Refused => None,
        }
    }
}
