//! One view of any pool, whatever its backend: what exporters, health
//! endpoints and dashboards read.

use std::future::Future;
use std::pin::Pin;

use crate::alerts::{Alert, ServerCapacity};
use crate::config::PoolConfig;
use crate::fleet::FleetStatus;
use crate::health::PoolHealth;
use crate::leaks::LeakSuspect;
use crate::manager::Manager;
use crate::pool::Pool;
use crate::sizing::SizingReport;
use crate::stats::{PoolStatus, StatsSnapshot};

/// A pool seen from outside, with its backend erased, so that pools of
/// different backends can sit in one list (`Vec<Arc<dyn PoolView>>`).
/// Every [`Pool`] is one. Reading it never blocks `get()`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # use tidewater_testkit::ScriptedManager;
/// use std::sync::Arc;
/// use tidewater::PoolView;
/// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
/// let views: Vec<Arc<dyn PoolView>> = vec![Arc::new(pool)];
/// assert_eq!(views[0].status().max_size, 50);
/// assert_eq!(views[0].health().await.pool.as_ref(), "default");
/// assert_eq!(views[0].fleet(), None, "in no fleet until a coordinator reports one");
/// # }
/// ```
pub trait PoolView: Send + Sync + 'static {
    /// The pool's name.
    fn name(&self) -> &str;
    /// Its configuration.
    fn config(&self) -> &PoolConfig;
    /// Its numbers now.
    fn status(&self) -> PoolStatus;
    /// Its limit on connections in use, and why it is where it is.
    fn sizing(&self) -> SizingReport;
    /// Its counters and histograms.
    fn stats(&self) -> StatsSnapshot;
    /// Connections held past the leak threshold.
    fn leak_suspects(&self) -> Vec<LeakSuspect>;
    /// Alerts firing.
    fn alerts(&self) -> Vec<Alert>;
    /// The last server capacity report.
    fn capacity(&self) -> Option<ServerCapacity>;
    /// The last fleet status; `None` outside a fleet.
    fn fleet(&self) -> Option<FleetStatus>;
    /// Its health report.
    fn health(&self) -> Pin<Box<dyn Future<Output = PoolHealth> + Send + '_>>;
}

impl<M: Manager> PoolView for Pool<M> {
    fn name(&self) -> &str {
        Pool::name(self)
    }

    fn config(&self) -> &PoolConfig {
        Pool::config(self)
    }

    fn status(&self) -> PoolStatus {
        Pool::status(self)
    }

    fn sizing(&self) -> SizingReport {
        Pool::sizing(self)
    }

    fn stats(&self) -> StatsSnapshot {
        Pool::stats(self)
    }

    fn leak_suspects(&self) -> Vec<LeakSuspect> {
        Pool::leak_suspects(self)
    }

    fn alerts(&self) -> Vec<Alert> {
        Pool::alerts(self)
    }

    fn capacity(&self) -> Option<ServerCapacity> {
        Pool::capacity(self)
    }

    fn fleet(&self) -> Option<FleetStatus> {
        Pool::fleet(self)
    }

    fn health(&self) -> Pin<Box<dyn Future<Output = PoolHealth> + Send + '_>> {
        Box::pin(Pool::health(self))
    }
}
