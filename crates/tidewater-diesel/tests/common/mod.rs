//! What the crate's test files share.

#![allow(dead_code)] // each test file uses a part

use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, RunQueryDsl};
use tidewater_diesel::DieselError;

#[allow(unused_imports)] // each test file uses a part
pub use tidewater_testkit::{POLL_DEADLINE, eventually};

#[derive(diesel::QueryableByName)]
struct Value {
    #[diesel(sql_type = BigInt)]
    v: i64,
}

/// Runs `sql` (one row, one integer column) on PostgreSQL through diesel.
pub async fn pg_i64<C>(conn: &mut C, sql: &str) -> diesel::QueryResult<i64>
where
    C: AsyncConnection<Backend = diesel::pg::Pg>,
{
    let row: Value = diesel::sql_query(format!("SELECT ({sql})::int8 AS v"))
        .get_result(conn)
        .await?;
    Ok(row.v)
}

/// Runs `sql` (one row, one integer column) on MariaDB through diesel.
pub async fn mariadb_i64<C>(conn: &mut C, sql: &str) -> diesel::QueryResult<i64>
where
    C: AsyncConnection<Backend = diesel::mariadb::Mariadb>,
{
    let row: Value = diesel::sql_query(format!("SELECT CAST(({sql}) AS SIGNED) AS v"))
        .get_result(conn)
        .await?;
    Ok(row.v)
}

/// Runs `sql` (one row, one integer column) on SQLite through diesel.
pub async fn sqlite_i64<C>(conn: &mut C, sql: &str) -> diesel::QueryResult<i64>
where
    C: AsyncConnection<Backend = diesel::sqlite::Sqlite>,
{
    let row: Value = diesel::sql_query(format!("SELECT CAST(({sql}) AS BIGINT) AS v"))
        .get_result(conn)
        .await?;
    Ok(row.v)
}

/// An application's error, as the transaction helper expects one:
/// convertible from the pool's and diesel's errors, with the cause behind
/// it for `is_conflict`.
#[derive(Debug)]
pub struct AppError(pub Box<dyn std::error::Error + Send + Sync>);

impl AppError {
    /// The application refused: an error that is not the database's.
    pub fn refused() -> Self {
        Self("refused by the application".into())
    }
}

impl From<tidewater::Error> for AppError {
    fn from(error: tidewater::Error) -> Self {
        Self(Box::new(error))
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(error: diesel::result::Error) -> Self {
        Self(Box::new(error))
    }
}

impl From<DieselError> for AppError {
    fn from(error: DieselError) -> Self {
        Self(Box::new(error))
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
