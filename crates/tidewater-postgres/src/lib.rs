//! # tidewater-postgres
//!
//! PostgreSQL for the [tidewater] pool, over `tokio-postgres`.
//!
//! - **Exact session reset.** Each connection's socket is watched for the
//!   transaction status the server reports with every answer, so a
//!   connection returned with a transaction open (or failed) is rolled back
//!   before its next use, and one that is not costs no extra round trip.
//!   `DISCARD ALL` before every reuse is one setting away
//!   ([`SessionReset::DiscardAll`]).
//! - **No query holds a connection forever.** [`PgConnection`]'s query
//!   methods are bounded by `statement_timeout`; a query that outlives it
//!   is cancelled on the server with a PostgreSQL cancel request, and the
//!   connection is kept if the server obeys, discarded if not.
//! - **Errors that say which.** Connection errors are classified from their
//!   SQLSTATE or I/O cause: refused, reset, `57P01`, `57P03`, `53300` are
//!   retried; `28P01` (bad password), `3D000` (unknown database), `28000`
//!   fail the waiting callers at once, with a message naming the cause.
//! - **Every host, like libpq.** `host=a,b`, `hostaddr`, `port`,
//!   `load_balance_hosts`, `target_session_attrs`, `connect_timeout`.
//! - **TLS only when asked, and then verified** (`sslmode=require`, feature
//!   `rustls`).
//! - **Behind PgBouncer** in transaction mode
//!   ([`PgOptions::transaction_pooler`]).
//! - **Fits the server?** [`check_capacity`] compares `max_size` (times
//!   replicas) with what `max_connections` leaves.
//! - **Session setup and rotating passwords.** [`PgOptions::setup_sql`]
//!   runs on each new connection (and after `DISCARD ALL`);
//!   [`PgManager::with_credentials`] takes the password (or IAM token) of
//!   each new connection from a provider.
//! - **Transactions with retry** on serialization failure and deadlock:
//!   [`transaction`].
//! - **For drivers built on tokio-postgres** (diesel-async):
//!   [`PgManager::open_session`] opens a session the same way, and its
//!   [`SessionWatch`] reads the transaction status off the socket.
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tidewater::PoolConfig;
//! use tidewater_postgres::{PgManager, PgOptions};
//!
//! let options = PgOptions { url: "postgres://app@localhost/orders".into(), ..Default::default() };
//! let pool = PgManager::new(options)?.into_pool(PoolConfig::default())?;
//! let conn = pool.get().await?;
//! let total: i64 = conn.query_one("SELECT count(*) FROM orders", &[]).await?.get(0);
//! # Ok(()) }
//! ```

mod capacity;
mod connect;
mod connection;
mod error;
pub mod fleet;
mod manager;
mod tap;
mod tls;
mod transaction;

pub use capacity::{Capacity, CapacityError, check_capacity};
pub use connect::SessionWatch;
pub use connection::PgConnection;
pub use error::PgError;
pub use fleet::FleetOptions;
pub use manager::{PgManager, PgOptions, SessionReset, redact};
pub use tap::TransactionStatus;
pub use tidewater::RetryPolicy;
pub use tokio_postgres;
pub use transaction::{is_conflict, transaction};
