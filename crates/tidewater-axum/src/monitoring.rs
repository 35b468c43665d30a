//! The pools a service monitors over HTTP: their history, health, metrics
//! and dashboard.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, SystemTime};

use axum::Router;
use tidewater::alerts::{Alert, ServerCapacity};
use tidewater::fleet::FleetStatus;
use tidewater::health::{HealthCheck, HealthStatus, PoolHealth, ServiceHealth};
use tidewater::prometheus::PoolMetrics;
use tidewater::{LeakSuspect, PoolConfig, PoolStatus, PoolView, StatsSnapshot};
use tokio::sync::oneshot;
use tokio::time::{Instant, MissedTickBehavior};

use crate::report::{History, PoolsReport, pool_report, unix_ms};

/// Time between two history samples, by default.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// History points kept per pool, by default: ten minutes at one a second.
pub const HISTORY_POINTS: usize = 600;

/// How long a health check may take beyond the pool's own
/// `validation_timeout` (which already bounds its probe) before it counts
/// as failed.
const HEALTH_GRACE: Duration = Duration::from_secs(1);

/// The pools a service monitors over HTTP, whatever their backends.
///
/// It samples every registered pool once a second into a ring buffer of
/// about ten minutes (connections in use, idle and allowed, waiters,
/// connections opening, acquisition wait p50 and p99 over the last interval,
/// total timeouts and connection errors, breaker state), and serves through
/// [`router`](Monitoring::router):
///
/// | route | what |
/// |---|---|
/// | `GET /health/live` | `200 {"live":true}`, always; never touches a database |
/// | `GET /health/ready` | the `ServiceHealth` JSON of `docs/health.md`: `200` when ready, `503` when a pool is unhealthy |
/// | `GET /metrics` | every pool's metrics in the OpenMetrics text format |
/// | `GET /api/pools` | the dashboard's JSON ([`PoolsReport`]); `?pool=NAME` for one pool, `?after=N` for history after sample `N` |
/// | `GET /dashboard` | the live dashboard (`?pool=NAME` selects a pool), with its assets under `/dashboard/` |
///
/// Clones share the pools. The sampler task ends when the last clone (the
/// router holds one) is dropped.
///
/// ```
/// use axum::Router;
/// use axum::body::Body;
/// use axum::http::Request;
/// use tidewater::Pool;
/// use tidewater_axum::Monitoring;
/// use tidewater_testkit::ScriptedManager;
/// use tower_service::Service;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let orders = Pool::new(ScriptedManager::new(), tidewater::PoolConfig {
///     name: "orders".into(),
///     ..Default::default()
/// }).unwrap();
/// let monitoring = Monitoring::new();
/// monitoring.register(orders.clone());
///
/// let mut app: Router = Router::new().merge(monitoring.router());
/// let response = app.call(Request::get("/health/ready").body(Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(response.status(), 200);
/// assert_eq!(monitoring.report().pools[0].name, "orders");
/// # }
/// ```
#[derive(Clone)]
pub struct Monitoring {
    inner: Arc<Inner>,
}

struct Inner {
    pools: RwLock<Vec<Arc<Watched>>>,
    metrics: PoolMetrics,
    interval: Duration,
    capacity: usize,
    /// The number of the last sample taken.
    samples: AtomicU64,
    /// Dropped with the last clone: ends the sampler at once.
    _stop: oneshot::Sender<()>,
}

/// One registered pool and its history.
struct Watched {
    view: Arc<dyn PoolView>,
    history: Mutex<History>,
}

impl fmt::Debug for Monitoring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .pools()
            .iter()
            .map(|pool| pool.view.name().to_owned())
            .collect();
        f.debug_struct("Monitoring")
            .field("pools", &names)
            .field("interval", &self.inner.interval)
            .finish_non_exhaustive()
    }
}

impl Default for Monitoring {
    fn default() -> Self {
        Self::new()
    }
}

impl Monitoring {
    /// No pools yet; samples every second and keeps ten minutes of history.
    ///
    /// # Panics
    /// Outside a Tokio runtime (it starts the sampler task).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let monitoring = tidewater_axum::Monitoring::new();
    /// assert!(monitoring.report().pools.is_empty());
    /// # }
    /// ```
    pub fn new() -> Self {
        Self::with_sampling(SAMPLE_INTERVAL, HISTORY_POINTS)
    }

    /// Samples every `interval` and keeps the last `points` samples of each
    /// pool (at least one).
    ///
    /// # Panics
    /// Outside a Tokio runtime, or with a zero `interval`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// // A minute of history at ten samples a second.
    /// let monitoring = tidewater_axum::Monitoring::with_sampling(Duration::from_millis(100), 600);
    /// assert_eq!(monitoring.report().sample_interval_seconds, 0.1);
    /// # }
    /// ```
    pub fn with_sampling(interval: Duration, points: usize) -> Self {
        assert!(!interval.is_zero(), "the sample interval must not be zero");
        let (stop, stopped) = oneshot::channel();
        let inner = Arc::new(Inner {
            pools: RwLock::new(Vec::new()),
            metrics: PoolMetrics::new(),
            interval,
            capacity: points.max(1),
            samples: AtomicU64::new(0),
            _stop: stop,
        });
        tokio::spawn(sample(Arc::downgrade(&inner), stopped, interval));
        Self { inner }
    }

    /// Monitors `pool` too (a [`Pool`](tidewater::Pool) clone, say): its
    /// history starts now, and it appears in the health report, the metrics
    /// and the dashboard. Pools are told apart by name; give each its own.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tidewater_testkit::ScriptedManager;
    /// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
    /// let monitoring = tidewater_axum::Monitoring::new();
    /// monitoring.register(pool.clone());
    /// let max = tidewater::metric_names::CONNECTION_MAX;
    /// assert!(monitoring.render_metrics().contains(&format!("{max}{{pool_name=\"default\"}} 50")));
    /// # }
    /// ```
    pub fn register(&self, pool: impl PoolView) {
        let view: Arc<dyn PoolView> = Arc::new(pool);
        let mut pools = write(&self.inner.pools);
        if pools.iter().any(|known| known.view.name() == view.name()) {
            tracing::warn!(
                pool = view.name(),
                "two monitored pools share a name; the dashboard and metrics cannot tell them apart"
            );
        }
        self.inner.metrics.register(Shared(view.clone()));
        let history = History::new(self.inner.capacity, view.stats());
        pools.push(Arc::new(Watched {
            view,
            history: Mutex::new(history),
        }));
    }

    /// The routes of the [type documentation](Monitoring), for any router
    /// state: merge them into the service's router.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use axum::{Router, routing::get};
    /// #[derive(Clone)]
    /// struct AppState;
    /// let monitoring = tidewater_axum::Monitoring::new();
    /// let app: Router<AppState> = Router::new()
    ///     .route("/", get(|| async { "hello" }))
    ///     .merge(monitoring.router());
    /// let _app: Router = app.with_state(AppState);
    /// # }
    /// ```
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        crate::routes::router(self.clone())
    }

    /// Every pool's health (each check bounded by the pool's
    /// `validation_timeout` and a second more), checked concurrently:
    /// what `GET /health/ready` returns.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tidewater_testkit::ScriptedManager;
    /// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
    /// let monitoring = tidewater_axum::Monitoring::new();
    /// monitoring.register(pool);
    /// let health = monitoring.health().await;
    /// assert!(health.live && health.ready);
    /// assert_eq!(health.pools.len(), 1);
    /// # }
    /// ```
    pub async fn health(&self) -> ServiceHealth {
        let checks: Vec<_> = self
            .pools()
            .into_iter()
            .map(|pool| {
                let view = pool.view.clone();
                (pool, tokio::spawn(bounded_health(view)))
            })
            .collect();
        let mut reports = Vec::with_capacity(checks.len());
        for (pool, check) in checks {
            reports.push(check.await.unwrap_or_else(|_| {
                unanswered(&*pool.view, "the health check panicked".to_owned())
            }));
        }
        ServiceHealth::of(reports)
    }

    /// Every pool's metrics in the OpenMetrics text format: what
    /// `GET /metrics` returns, with content type
    /// [`PoolMetrics::CONTENT_TYPE`].
    pub fn render_metrics(&self) -> String {
        self.inner.metrics.render()
    }

    /// Every pool's numbers, alerts, leak suspects, totals and history
    /// (oldest first): what `GET /api/pools` returns. Never touches a
    /// database.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tidewater_testkit::ScriptedManager;
    /// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
    /// let monitoring = tidewater_axum::Monitoring::new();
    /// monitoring.register(pool.clone());
    /// drop(pool.get().await.unwrap());
    /// let report = monitoring.report();
    /// assert_eq!(report.pools[0].totals.acquired, 1);
    /// assert_eq!(report.history_capacity, 600);
    /// # }
    /// ```
    pub fn report(&self) -> PoolsReport {
        self.report_of(None, 0)
    }

    /// The report of the pool named `only` (all when `None`), with the
    /// history points after sample `after`.
    pub(crate) fn report_of(&self, only: Option<&str>, after: u64) -> PoolsReport {
        let last_sample = self.inner.samples.load(Relaxed);
        let pools = self
            .pools()
            .iter()
            .filter(|pool| only.is_none_or(|name| pool.view.name() == name))
            .map(|pool| {
                let history = lock(&pool.history).after(after);
                pool_report(&*pool.view, history)
            })
            .collect();
        PoolsReport {
            generated_at_unix_ms: unix_ms(SystemTime::now()),
            sample_interval_seconds: self.inner.interval.as_secs_f64(),
            history_capacity: self.inner.capacity,
            last_sample,
            pools,
        }
    }

    /// Whether a pool of that name is monitored.
    pub(crate) fn has_pool(&self, name: &str) -> bool {
        self.pools().iter().any(|pool| pool.view.name() == name)
    }

    fn pools(&self) -> Vec<Arc<Watched>> {
        read(&self.inner.pools).clone()
    }
}

impl Inner {
    /// Takes one sample of every pool.
    fn sample(&self) {
        let unix_ms = unix_ms(SystemTime::now());
        let pools = read(&self.pools).clone();
        let number = self.samples.fetch_add(1, Relaxed) + 1;
        for pool in pools {
            lock(&pool.history).record(&*pool.view, number, unix_ms);
        }
    }
}

/// The sampler: one sample per interval until `stopped` (the last
/// [`Monitoring`] clone is gone).
async fn sample(inner: Weak<Inner>, mut stopped: oneshot::Receiver<()>, every: Duration) {
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = ticks.tick() => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        inner.sample();
    }
}

/// `view`'s health, or an unhealthy report when it takes longer than its
/// validation timeout and a grace period.
async fn bounded_health(view: Arc<dyn PoolView>) -> PoolHealth {
    let bound = view.config().validation_timeout + HEALTH_GRACE;
    match tokio::time::timeout(bound, view.health()).await {
        Ok(report) => report,
        Err(_) => unanswered(
            &*view,
            format!("the health check did not finish within {bound:?}"),
        ),
    }
}

/// A report for a pool whose health check did not finish: `acquire` fails
/// with `reason`; the other checks are read from its live numbers.
fn unanswered(view: &dyn PoolView, reason: String) -> PoolHealth {
    let state = view.status();
    let leak_suspects = view.leak_suspects();
    let fleet = view.fleet();
    let threshold = view.config().alerts.utilization_threshold;
    let share = f64::from(state.in_use) / f64::from(state.max_size.max(1));
    let check = |name, healthy: bool, bad, reason: String| HealthCheck {
        name,
        status: if healthy { HealthStatus::Healthy } else { bad },
        reason,
    };
    let checks = vec![
        check("acquire", false, HealthStatus::Unhealthy, reason),
        check(
            "breaker",
            !state.breaker_open,
            HealthStatus::Unhealthy,
            if state.breaker_open { "open" } else { "closed" }.to_owned(),
        ),
        check(
            "utilization",
            share < threshold,
            HealthStatus::Degraded,
            format!(
                "{} of {} connections in use ({:.0}%), {} waiting",
                state.in_use,
                state.max_size,
                share * 100.0,
                state.waiters
            ),
        ),
        check(
            "wait_p99",
            false,
            HealthStatus::Degraded,
            "not measured: the health check did not finish".to_owned(),
        ),
        check(
            "leaks",
            leak_suspects.is_empty(),
            HealthStatus::Degraded,
            format!("{} connection(s) held too long", leak_suspects.len()),
        ),
        HealthCheck::of_fleet(fleet.as_ref()),
    ];
    PoolHealth {
        pool: view.name().into(),
        status: HealthStatus::Unhealthy,
        checks,
        state,
        sizing: view.sizing(),
        leak_suspects,
        alerts: view.alerts(),
        fleet,
    }
}

/// A registered pool, shared by the history and the metrics.
struct Shared(Arc<dyn PoolView>);

impl PoolView for Shared {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn config(&self) -> &PoolConfig {
        self.0.config()
    }

    fn status(&self) -> PoolStatus {
        self.0.status()
    }

    fn sizing(&self) -> tidewater::SizingReport {
        self.0.sizing()
    }

    fn stats(&self) -> StatsSnapshot {
        self.0.stats()
    }

    fn leak_suspects(&self) -> Vec<LeakSuspect> {
        self.0.leak_suspects()
    }

    fn alerts(&self) -> Vec<Alert> {
        self.0.alerts()
    }

    fn capacity(&self) -> Option<ServerCapacity> {
        self.0.capacity()
    }

    fn fleet(&self) -> Option<FleetStatus> {
        self.0.fleet()
    }

    fn health(&self) -> Pin<Box<dyn Future<Output = PoolHealth> + Send + '_>> {
        self.0.health()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn samples_every_interval_and_stops_with_the_last_clone() {
        let (pool, _script) = tidewater_testkit::scripted_pool(Default::default());
        let monitoring = Monitoring::with_sampling(Duration::from_secs(1), 3);
        monitoring.register(pool.clone());
        let held = pool.get().await.unwrap();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let history = monitoring.report().pools[0].history.clone();
        assert_eq!(history.len(), 2);
        assert_eq!(history[1].in_use, 1);
        assert_eq!(history[0].acquired, 1);
        drop(held);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let report = monitoring.report();
        assert_eq!(report.pools[0].history.len(), 3, "the ring keeps 3");
        assert_eq!(report.last_sample, 7);
        assert_eq!(report.pools[0].history[2].in_use, 0);

        let tasks = || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
        };
        let running = tasks();
        let weak = Arc::downgrade(&monitoring.inner);
        let clone = monitoring.clone();
        drop(monitoring);
        tidewater_testkit::settle().await;
        assert!(weak.upgrade().is_some(), "a clone keeps it");
        assert_eq!(tasks(), running);
        drop(clone);
        assert!(
            weak.upgrade().is_none(),
            "the sampler holds no strong reference"
        );
        tidewater_testkit::settle().await;
        assert_eq!(tasks(), running - 1, "the sampler ended at once");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_health_check_that_panics_makes_the_pool_unhealthy() {
        let (pool, _script) = tidewater_testkit::scripted_pool(Default::default());
        pool.report_fleet(tidewater_testkit::fleet_status(Some("connection refused")));
        let report = unanswered(&pool, "the health check panicked".to_owned());
        assert_eq!(report.status, HealthStatus::Unhealthy);
        let names: Vec<&str> = report.checks.iter().map(|check| check.name).collect();
        assert_eq!(
            names,
            [
                "acquire",
                "breaker",
                "utilization",
                "wait_p99",
                "leaks",
                "fleet"
            ]
        );
        assert_eq!(report.checks[5].status, HealthStatus::Degraded);
        assert_eq!(report.fleet, pool.fleet());
        assert!(!ServiceHealth::of(vec![report]).ready);
    }
}
