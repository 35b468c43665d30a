//! Test support for tidewater.
//!
//! - [`ScriptedManager`] is a [`Manager`](tidewater::Manager) whose every
//!   move a test controls: connect latency and outcomes (succeed, fail
//!   transient or permanent, hang), validation and reset outcomes, broken and
//!   dirty connections, and counts of everything it did. Its waits use
//!   tokio's clock, so tests run it under a paused clock and never sleep for
//!   real.
//! - [`SimulatedDatabase`] is a database whose latency grows with
//!   concurrency past a knee, on tokio's clock: the adaptive limit's tests
//!   drive it through a scripted pool.
//! - [`PgCluster`] is a private PostgreSQL server that a test may restart,
//!   kill, pause, empty of connections or starve of connection slots.
//! - [`FaultProxy`] sits on the wire between a client and a server and adds
//!   latency, swallows traffic (a half-open server), resets connections or
//!   refuses new ones.
//! - [`PgBouncer`] runs PgBouncer in front of a server.
//! - [`conformance`](mod@conformance) is the suite every backend passes,
//!   with the database scaffolding its targets share ([`conformance::pg`],
//!   [`conformance::mariadb`]); [`rotation`] is what credential-rotation
//!   tests share.
//! - [`eventually`] polls a condition until it holds, up to
//!   [`POLL_DEADLINE`].
//! - [`SessionSampler`] counts a server's client sessions every 100 ms.
//! - [`fleet_status`] is a fleet's status as a coordinator reports it to a
//!   pool ([`Pool::report_fleet`](tidewater::Pool::report_fleet)).
//! - `browser::Browser` (feature `browser`) is a headless Chromium that
//!   opens a served page, reads and waits for it, and records the page's
//!   JavaScript errors.
//!
//! Everything that starts a process shuts it down and removes its files when
//! dropped, and a watchdog process does the same if the test process dies
//! without dropping it. Every wait is bounded.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use tidewater::{ErrorClass, Pool, PoolConfig};
//! use tidewater_testkit::{ConnectStep, ScriptedManager};
//!
//! let manager = ScriptedManager::new();
//! let script = manager.script();
//! script.push_connect(ConnectStep::Fail(ErrorClass::Transient));
//! let pool = Pool::new(manager, PoolConfig::default()).unwrap();
//! let conn = pool.get().await.unwrap(); // the first attempt failed, the retry worked
//! assert_eq!((script.attempts(), script.opened()), (2, 1));
//! conn.set_broken();
//! drop(conn);
//! assert_eq!(script.closed(), 1);
//! # }
//! ```

#[cfg(feature = "browser")]
pub mod browser;
mod command;
pub mod conformance;
mod fault_proxy;
mod fleet;
mod pg_cluster;
mod pgbouncer;
mod procfs;
pub mod rotation;
mod scripted;
mod sessions;
mod simulated;
mod test_ca;
mod wait;
mod watchdog;

pub use fault_proxy::FaultProxy;
pub use fleet::fleet_status;
pub use pg_cluster::{PgCluster, Shutdown};
pub use pgbouncer::{PgBouncer, PgBouncerOptions, PoolMode};
pub use scripted::{
    CheckStep, ConnectStep, Script, ScriptedConnection, ScriptedError, ScriptedManager,
    scripted_pool, settle, spawn_get,
};
pub use sessions::{RunningSampler, SAMPLE_EVERY, Sample, SessionSampler};
pub use simulated::SimulatedDatabase;
pub use test_ca::TestCertificates;
pub use wait::{POLL_DEADLINE, eventually};

/// What the exported macros name, so that a test crate needs no import
/// for them.
#[doc(hidden)]
pub mod __private {
    pub use tidewater::Pool;
}

/// Locks `mutex`, also when a panicking test poisoned it.
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
