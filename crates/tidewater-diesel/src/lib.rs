//! # tidewater-diesel
//!
//! [diesel-async](diesel_async) connections in a [tidewater]
//! pool: PostgreSQL ([`PgManager`]), MySQL ([`MysqlManager`]), MariaDB
//! ([`MariadbManager`]) and SQLite ([`SqliteManager`], through
//! diesel-async's `SyncConnectionWrapper`, SQLite compiled in).
//!
//! - **Your queries stay as they are.** The pool's guard derefs to the
//!   diesel-async connection, and is one: `diesel_async::RunQueryDsl`,
//!   `conn.transaction(..)`, `conn.batch_execute(..)` take `&mut *conn`.
//! - **No dirty session reaches the next caller.** On PostgreSQL the
//!   socket is tapped (sessions are opened by tidewater-postgres, which
//!   watches the socket), so a transaction left open (a plain `BEGIN`, a
//!   query whose future was dropped) is known from the server's own
//!   status byte and rolled back before reuse, at no cost when there is
//!   none. On MySQL/MariaDB and SQLite, whose state diesel-async hides,
//!   every reuse starts with a `ROLLBACK`. A connection whose diesel
//!   transaction manager is mid-way (a dropped `conn.transaction(..)`
//!   future, a panic in its body) is discarded, as diesel-async's own
//!   pools do. [`SessionReset::Full`] (PostgreSQL) and
//!   [`with_reset_sql`](DieselManager::with_reset_sql) clear more.
//! - **Errors that say which.** Connections are opened with
//!   tidewater-postgres (over tokio-postgres) and mysql_async directly,
//!   and handed to diesel-async
//!   (`try_from`), so a bad password is SQLSTATE `28P01` or MySQL 1045
//!   (permanent: waiting callers fail at once), not a sentence in
//!   `ConnectionError::BadConnection`; refused, reset, `57P01`, `57P03`,
//!   too many connections are retried. See [`DieselError::class`].
//! - **Setup and credentials.** Setup SQL and a setup callback on every new
//!   connection; a [`CredentialsProvider`](tidewater::credentials::CredentialsProvider)
//!   asked for each new connection (rotating passwords, IAM tokens).
//! - **TLS to PostgreSQL** (`sslmode=require`, certificates verified)
//!   with the `rustls` feature.
//! - **Transactions with retry** on serialization failure, deadlock and
//!   lock wait timeout: [`transaction`].
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use diesel::prelude::*;
//! use diesel_async::RunQueryDsl;
//! use tidewater::PoolConfig;
//! use tidewater_diesel::PgManager;
//!
//! diesel::table! {
//!     users (id) {
//!         id -> BigInt,
//!         name -> Text,
//!     }
//! }
//!
//! let pool = PgManager::new("postgres://postgres@127.0.0.1/test")?.into_pool(PoolConfig::default())?;
//! let mut conn = pool.get().await?;
//! let names: Vec<String> = users::table
//!     .select(users::name)
//!     .filter(users::id.lt(10))
//!     .load(&mut *conn)
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! SQLite, with diesel's `RunQueryDsl` through the same guard:
//!
//! ```
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use diesel::sql_types::BigInt;
//! use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
//! use tidewater::PoolConfig;
//! use tidewater_diesel::SqliteManager;
//!
//! #[derive(diesel::QueryableByName)]
//! struct Total {
//!     #[diesel(sql_type = BigInt)]
//!     total: i64,
//! }
//!
//! let pool = SqliteManager::new(":memory:")?.into_pool(PoolConfig { max_size: 1, ..Default::default() })?;
//! let mut conn = pool.get().await?;
//! conn.batch_execute("CREATE TABLE t (n BIGINT); INSERT INTO t VALUES (1), (2)").await?;
//! let row: Total = diesel::sql_query("SELECT sum(n) AS total FROM t").get_result(&mut *conn).await?;
//! assert_eq!(row.total, 3);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod driver;
mod error;
mod manager;
mod mysql;
mod pg;
mod sqlite;
mod transaction;

pub use diesel_async;
pub use driver::Driver;
pub use error::{DieselError, is_conflict};
pub use manager::{
    DieselConnection, DieselManager, MariadbManager, MysqlManager, PgManager, SessionReset,
    SetupFuture, SqliteManager, Validation,
};
pub use tidewater::RetryPolicy;
/// A PostgreSQL session's transaction status
/// ([`DieselConnection::transaction_status`]).
pub use tidewater_postgres::TransactionStatus;
/// `url` with any password replaced by `***`, for logs and errors
/// (PostgreSQL and MySQL/MariaDB URLs alike).
pub use tidewater_postgres::redact;
pub use transaction::transaction;
