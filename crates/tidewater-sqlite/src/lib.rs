//! # tidewater-sqlite
//!
//! SQLite for the [tidewater] pool, over `rusqlite` with SQLite
//! built in (feature `bundled`: nothing to install).
//!
//! - **SQLite never blocks the runtime.** Each connection lives on a thread
//!   of its own; [`SqliteConnection::interact`] sends it a closure and
//!   awaits the result. A closure that panics closes its connection (the
//!   pool replaces it) and comes back as an error; one that outlives
//!   `statement_timeout` is interrupted; a call whose future is dropped
//!   still runs to its end, and the transaction it left open is rolled back
//!   before the connection's next use.
//! - **Production pragmas by default**: `journal_mode = WAL`,
//!   `synchronous = NORMAL`, `foreign_keys = ON`, `busy_timeout` 5 s, each
//!   one overridable, in order ([`SqliteOptions::pragmas`]); unknown pragma
//!   names are refused rather than ignored.
//! - **In-memory databases that outlive checkouts**: a named shared-cache
//!   database kept alive by the manager's own anchor connection.
//! - **Errors that say which.** A missing file with `create` off, a missing
//!   folder, a corrupt file, a read-only file fail the waiting callers at
//!   once with a message naming the cause; `SQLITE_BUSY` and
//!   `SQLITE_LOCKED` are retried.
//! - **Exact session reset.** Each call reports whether a transaction is
//!   open, so only a connection returned mid-transaction is rolled back;
//!   a full reset of temporary tables and pragmas is one setting away
//!   ([`SessionReset::Full`]).
//! - **A deleted database file is noticed**: a connection whose file was
//!   deleted or replaced closes itself (within a second, or at its next
//!   call) instead of writing to a file nobody sees
//!   ([`SqliteError::FileReplaced`]).
//! - **Transactions with retry** when the database is busy: [`transaction`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tidewater::PoolConfig;
//! use tidewater_sqlite::{SqliteManager, SqliteOptions};
//!
//! let dir = tempfile::tempdir()?;
//! let options = SqliteOptions::file(dir.path().join("orders.db"));
//! let pool = SqliteManager::new(options)?.into_pool(PoolConfig::default())?;
//! let conn = pool.get().await?;
//! conn.execute_batch("CREATE TABLE orders (id INTEGER PRIMARY KEY, paid INTEGER)").await?;
//! conn.execute("INSERT INTO orders (paid) VALUES (?1)", [1]).await?;
//! let paid: i64 = conn
//!     .interact(|c| c.query_row("SELECT count(*) FROM orders WHERE paid", [], |row| row.get(0)))
//!     .await??;
//! assert_eq!(paid, 1);
//! # Ok(()) }
//! ```

mod connection;
mod error;
mod manager;
mod open;
mod options;
mod transaction;

pub use connection::SqliteConnection;
pub use error::{SqliteError, is_busy};
pub use manager::SqliteManager;
pub use options::{DEFAULT_PRAGMAS, MEMORY, SessionReset, SqliteOptions};
pub use rusqlite;
pub use tidewater::RetryPolicy;
pub use transaction::{transaction, transaction_with};
