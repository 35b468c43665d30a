//! # tidewater-sqlx
//!
//! sqlx connections pooled by [tidewater]: services written
//! against sqlx keep their queries (`sqlx::query(..).fetch_one(&mut *conn)`,
//! `query_as`, `conn.begin()`) and get tidewater's pool: deadlines on every
//! wait, recovery after database restarts, fast failure on a bad password,
//! health, metrics and alerts.
//!
//! - **One manager for three databases**: [`SqlxManager<Postgres>`](SqlxManager),
//!   `SqlxManager<MySql>` (MySQL and MariaDB), `SqlxManager<Sqlite>`, each
//!   behind the feature of that name (all on by default).
//! - **Never handed out dirty.** A used connection is reset before its
//!   next checkout in one round trip: the rollback a dropped
//!   `sqlx::Transaction` queued is sent, the answers a cancelled query
//!   (future dropped mid-query) still owed are read, and a transaction
//!   left open (by sqlx or by a raw `BEGIN`) is rolled back. See
//!   [`SessionReset`].
//! - **Errors that say which.** [`classify`] sorts sqlx errors into
//!   transient (retried: refused, reset, `57P01`, `SQLITE_BUSY`...), full
//!   (`53300`, 1040) and permanent (`28P01`, 1045, unknown database, a
//!   missing SQLite file, TLS): the pool fails callers at once on a
//!   permanent one.
//! - **Setup SQL** on each new connection, **rotating credentials** for
//!   each new connection ([`SqlxManager::with_credentials`]).
//! - **Transactions with retry** on serialization failure, deadlock, lock
//!   wait timeout and busy database: [`transaction`].
//! - **sqlx's `Acquire`** through the [`SqlxPool`] newtype.
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use sqlx::{Connection, Postgres, Row};
//! use tidewater::PoolConfig;
//! use tidewater_sqlx::SqlxManager;
//!
//! let pool = SqlxManager::<Postgres>::from_url("postgres://app:secret@localhost/orders")?
//!     .into_pool(PoolConfig::default())?;
//! let mut conn = pool.get().await?;
//! let row = sqlx::query("SELECT count(*) AS n FROM orders").fetch_one(&mut *conn).await?;
//! let n: i64 = row.get("n");
//! let mut tx = conn.begin().await?;
//! sqlx::query("DELETE FROM orders WHERE id = $1").bind(7_i64).execute(&mut *tx).await?;
//! tx.commit().await?;
//! # Ok(()) }
//! ```
//!
//! SQLite: give a file (`sqlite://app.db?mode=rwc`); every connection to
//! `sqlite::memory:` opens a database of its own.

#![warn(missing_docs)]

mod backend;
mod error;
mod manager;
mod pool;
mod transaction;

pub use backend::{Backend, Options};
pub use error::{SqlxError, classify, is_conflict};
pub use manager::{SessionReset, SqlxManager, redact};
pub use pool::SqlxPool;
pub use sqlx;
pub use tidewater::RetryPolicy;
pub use transaction::transaction;
