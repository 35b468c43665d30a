//! # tidewater-mysql
//!
//! MySQL and MariaDB for the [tidewater] pool, over
//! `mysql_async`.
//!
//! - **Reset only when needed.** Every answer from the server carries its
//!   status flags; a connection returned with a transaction open,
//!   autocommit off, results pending or an error last (which leaves the
//!   transaction state unknown) is rolled back before its next use, and a
//!   clean one costs no extra round trip. `COM_RESET_CONNECTION` before
//!   every reuse is one setting away ([`SessionReset::ResetConnection`]).
//! - **No query holds a connection forever.** The server stops statements
//!   at `statement_timeout` itself (MariaDB `max_statement_time` on every
//!   statement, MySQL `max_execution_time` on `SELECT`s), and
//!   [`MySqlConnection`]'s query methods add a client-side deadline that
//!   sends `KILL QUERY` from a second connection and, if even that fails,
//!   discards the connection.
//! - **Errors that say which.** Classified by MySQL error code: lost
//!   connection (2013), gone away (2006), too many connections (1040,
//!   1203), lock wait timeout (1205), deadlock (1213) and socket errors are
//!   retried; bad password (1045), unknown database (1049) and the like
//!   fail the waiting callers at once, with a message naming the cause:
//!   `Access denied for user 'app'@'localhost' (using password: YES) (MySQL 1045: bad password or user)`.
//! - **TLS only when asked, and then verified** (`require_ssl=true`,
//!   feature `rustls`).
//! - **Passwords stay secret**: options, managers and connections print
//!   the URL redacted ([`redact`]), and errors never contain it.
//! - **Session setup and rotating passwords.** [`MySqlOptions::setup_sql`]
//!   runs on each new session (and after `COM_RESET_CONNECTION`);
//!   [`MySqlManager::with_credentials`] takes the password (or IAM token)
//!   of each new connection from a provider.
//! - **Transactions with retry** on deadlock and lock wait timeout:
//!   [`transaction`].
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tidewater::PoolConfig;
//! use tidewater_mysql::{MySqlManager, MySqlOptions};
//!
//! let options = MySqlOptions { url: "mysql://app:secret@localhost:3306/orders".into(), ..Default::default() };
//! let pool = MySqlManager::new(options)?.into_pool(PoolConfig::default())?;
//! let mut conn = pool.get().await?;
//! let total: Option<i64> = conn.query_first("SELECT COUNT(*) FROM orders").await?;
//! # Ok(()) }
//! ```

mod connection;
mod error;
mod manager;
mod transaction;

pub use connection::{MySqlConnection, SessionStatus};
pub use error::MySqlError;
pub use manager::{MySqlManager, MySqlOptions, SessionReset, redact};
pub use mysql_async;
pub use tidewater::RetryPolicy;
pub use transaction::{is_conflict, transaction};
