//! The pool's public face: building it, taking connections, its numbers,
//! resizing and closing.
//!
//! How it works inside, and where each rule lives:
//! - taking a connection (fast path, queue, preparing it): `acquire.rs`;
//! - connections coming back and where they go: `checkin.rs`;
//! - the locked state and the rules that change it: `state.rs`;
//! - slot accounting (open connections, attempts, `max_size`): `slots.rs`;
//! - the adaptive limit written into the slots' `max`: `sizing.rs`;
//! - idle connections and checkout records, per thread: `idle.rs`;
//! - the waiter queue and the hand-off to a waiter: `waiters.rs`;
//! - connection attempts, backoff and the breaker: `connect.rs`, `breaker.rs`;
//! - validation and reset on checkout: `guard.rs`;
//! - deadlines, idle timeout, lifetime, keepalive, leaks, min_idle:
//!   `maintenance.rs`.
//!
//! Two levels of locking. Idle connections and checkout records live in
//! per-thread shards: taking an idle connection and giving it back touch
//! only the home shard's lock and cache lines, allocate nothing and spawn
//! nothing. The waiter queue, the closed flag and the breaker live in
//! [`State`] behind one mutex, taken only on slow paths: waiting, handing a
//! connection to a waiter, opening or closing one, maintenance. No lock is
//! held across an `.await` or a call into the [`Manager`], and the pool's
//! lock is always taken before a shard's.

use std::future::Future;
use std::panic::Location;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Weak};

use tokio::sync::Notify;

use crate::alerts::{Alert, AlertSink, Monitor, ServerCapacity};
use crate::breaker::Breaker;
use crate::clock::Clock;
use crate::config::{ConfigError, PoolConfig};
use crate::error::Error;
use crate::fleet::FleetStatus;
use crate::guard::PooledConnection;
use crate::hooks::Hooks;
use crate::idle::Shards;
use crate::leaks::LeakSuspect;
use crate::manager::Manager;
use crate::rt::{self, Instant, Mutex, MutexGuard, fence};
use crate::sizing::Sizing;
use crate::slots::Slots;
use crate::state::State;
use crate::stats::{Gauges, PoolStatus, Stats, StatsSnapshot};

/// A pool of database connections. Cheap to clone: clones share one pool.
///
/// Build it with [`Pool::new`] inside a Tokio runtime, take connections with
/// [`get`](Pool::get), and let the guard's drop give them back.
///
/// ```
/// use std::time::Duration;
/// use tidewater::{Pool, PoolConfig};
/// use tidewater_testkit::ScriptedManager;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tidewater::Error> {
/// let config = PoolConfig { max_size: 10, acquire_timeout: Duration::from_secs(2), ..Default::default() };
/// let pool = Pool::new(ScriptedManager::new(), config).expect("valid configuration");
///
/// let conn = pool.get().await?; // waits at most 2 s, and says why if it gives up
/// assert_eq!(pool.status().in_use, 1);
/// drop(conn); // back in the pool, on every path
/// assert_eq!(pool.status().idle, 1);
/// # Ok(())
/// # }
/// ```
pub struct Pool<M: Manager> {
    pub(crate) shared: Arc<Shared<M>>,
}

impl<M: Manager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<M: Manager> std::fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

/// Aligned so that the `Arc`'s reference counts, which every checkout and
/// return update, sit alone on their cache line instead of sharing it with
/// the configuration and gauges that every checkout reads.
#[repr(align(128))]
pub(crate) struct Shared<M: Manager> {
    pub(crate) manager: Arc<M>,
    pub(crate) hooks: Hooks<M>,
    pub(crate) config: PoolConfig,
    pub(crate) name: Arc<str>,
    pub(crate) clock: Clock,
    state: Mutex<State<M::Connection>>,
    pub(crate) slots: Arc<Slots>,
    pub(crate) idle: Shards<M::Connection>,
    pub(crate) gauges: Gauges,
    pub(crate) stats: Stats,
    /// Wakes `close()` when the last connection of a closed pool is gone.
    pub(crate) drained: Notify,
    /// Wakes openers backing off when callers start waiting.
    pub(crate) pacing: Arc<Notify>,
    /// Wakes the maintenance task when a waiter's deadline comes before
    /// the time it sleeps until.
    pub(crate) sweep: Arc<Notify>,
    pub(crate) monitor: std::sync::Mutex<Monitor>,
    /// The ceiling and, when adaptive, the limit's controller.
    pub(crate) sizing: Sizing,
}

/// Builds a [`Pool`] with [`Hooks`]: from [`Pool::builder`].
#[must_use = "a builder does nothing until `build()`"]
pub struct PoolBuilder<M: Manager> {
    manager: M,
    config: PoolConfig,
    hooks: Hooks<M>,
}

impl<M: Manager> PoolBuilder<M> {
    /// The hooks the pool runs on its connections.
    ///
    /// ```
    /// # use tidewater_testkit::ScriptedManager;
    /// use tidewater::{Hooks, Pool};
    /// let builder = Pool::builder(ScriptedManager::new(), Default::default()).hooks(Hooks::new());
    /// # drop(builder);
    /// ```
    pub fn hooks(mut self, hooks: Hooks<M>) -> Self {
        self.hooks = hooks;
        self
    }

    /// The pool. Needs a Tokio runtime, as [`Pool::new`] does.
    ///
    /// # Errors
    /// A configuration key out of range, as [`Pool::new`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tidewater_testkit::ScriptedManager;
    /// let pool = tidewater::Pool::builder(ScriptedManager::new(), Default::default()).build();
    /// assert!(pool.is_ok());
    /// # }
    /// ```
    pub fn build(self) -> Result<Pool<M>, ConfigError> {
        Pool::build(self.manager, self.config, self.hooks)
    }
}

impl<M: Manager> std::fmt::Debug for PoolBuilder<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("config", &self.config)
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}

/// What [`Pool::close`] found.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # use tidewater_testkit::ScriptedManager;
/// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
/// drop(pool.get().await.unwrap());
/// let report = pool.close().await;
/// assert_eq!((report.closed_idle, report.still_in_use), (1, 0));
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloseReport {
    /// Idle connections closed at once.
    pub closed_idle: u32,
    /// Connections in use that came back (and were closed) within
    /// `drain_timeout`.
    pub drained: u32,
    /// Connections still in use when `drain_timeout` ran out; each is closed
    /// when it comes back.
    pub still_in_use: u32,
}

impl<M: Manager> Pool<M> {
    /// Builds a pool; connections open on demand (and up to `min_idle` in
    /// the background). Starts the pool's maintenance task, which ends when
    /// the pool is closed or dropped.
    ///
    /// # Errors
    /// The first configuration key outside its range.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tidewater_testkit::ScriptedManager;
    /// let config = tidewater::PoolConfig { max_size: 0, ..Default::default() };
    /// let error = tidewater::Pool::new(ScriptedManager::new(), config).unwrap_err();
    /// assert_eq!(error.to_string(), "invalid pool configuration: max_size = 0, allowed: 1 to 10000");
    /// # }
    /// ```
    pub fn new(manager: M, config: PoolConfig) -> Result<Self, ConfigError> {
        Self::builder(manager, config).build()
    }

    /// A pool with more than a configuration: [`Hooks`] to run on its
    /// connections.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tidewater_testkit::ScriptedManager;
    /// use tidewater::{Hooks, Pool, PoolConfig};
    /// let pool = Pool::builder(ScriptedManager::new(), PoolConfig::default())
    ///     .hooks(Hooks::new().before_checkout(|_conn| Box::pin(async { Ok(()) })))
    ///     .build()
    ///     .unwrap();
    /// assert!(pool.get().await.is_ok());
    /// # }
    /// ```
    pub fn builder(manager: M, config: PoolConfig) -> PoolBuilder<M> {
        PoolBuilder {
            manager,
            config,
            hooks: Hooks::new(),
        }
    }

    fn build(manager: M, config: PoolConfig, hooks: Hooks<M>) -> Result<Self, ConfigError> {
        config.validate()?;
        let breaker = Breaker::new(
            config.breaker.enabled,
            config.breaker.failure_threshold,
            config.connect_backoff,
        );
        let monitor = Monitor::new(&config.alerts);
        let sizing = Sizing::new(&config.sizing, config.max_size);
        let pool = Self {
            shared: Arc::new(Shared {
                manager: Arc::new(manager),
                hooks,
                name: config.name.as_str().into(),
                clock: Clock::new(),
                idle: Shards::new(config.idle_order),
                slots: Slots::new(sizing.initial_limit()),
                gauges: Gauges::new(),
                config,
                state: Mutex::new(State::new(breaker)),
                stats: Stats::new(),
                drained: Notify::new(),
                pacing: Arc::new(Notify::new()),
                sweep: Arc::new(Notify::new()),
                monitor: std::sync::Mutex::new(monitor),
                sizing,
            }),
        };
        #[cfg(not(tidewater_shuttle))]
        {
            crate::maintenance::start(&pool);
            crate::sizing::start(&pool);
        }
        pool.with_state(|pool, state| pool.start_openers(state));
        Ok(pool)
    }

    /// Takes a connection, waiting in FIFO order for at most
    /// `acquire_timeout` (validation included).
    ///
    /// The connection comes back to the pool when the returned guard drops,
    /// on every path: normal drop, `?`, panic, task abort. Cancelling this
    /// future at any point (while waiting, while a connection is opened for
    /// it, while validating) loses nothing: a connection interrupted during
    /// validation or reset is discarded and its slot freed.
    ///
    /// The caller's source location is recorded for leak reports.
    ///
    /// # Errors
    /// [`Error::Timeout`] (with the last connection error, if the database
    /// is the reason), [`Error::Unavailable`] at once while the breaker is
    /// open, [`Error::QueueFull`], [`Error::Closed`], or [`Error::Connect`]
    /// for a permanent connection error.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tidewater::Error> {
    /// # use tidewater_testkit::ScriptedManager;
    /// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
    /// let conn = pool.get().await?;
    /// assert_eq!(conn.id(), 1);
    /// # Ok(())
    /// # }
    /// ```
    #[track_caller]
    pub fn get(&self) -> impl Future<Output = Result<PooledConnection<M>, Error>> + Send + '_ {
        self.acquire(Location::caller(), true)
    }

    /// Takes an idle connection if one is ready now, without waiting in the
    /// queue or opening a new one. It may still validate or reset the
    /// connection it takes.
    ///
    /// # Errors
    /// [`Error::NoIdleConnection`] when none is idle, [`Error::Closed`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tidewater_testkit::ScriptedManager;
    /// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
    /// assert!(matches!(pool.try_get().await, Err(tidewater::Error::NoIdleConnection { .. })));
    /// drop(pool.get().await.unwrap());
    /// assert!(pool.try_get().await.is_ok());
    /// # }
    /// ```
    #[track_caller]
    pub fn try_get(&self) -> impl Future<Output = Result<PooledConnection<M>, Error>> + Send + '_ {
        self.acquire(Location::caller(), false)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State<M::Connection>> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` under the lock, then publishes the gauges.
    pub(crate) fn with_state<T>(&self, f: impl FnOnce(&Self, &mut State<M::Connection>) -> T) -> T {
        let mut state = self.lock();
        let result = f(self, &mut state);
        self.publish(&mut state);
        result
    }

    /// The pool's numbers now, read without taking its lock.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tidewater_testkit::ScriptedManager;
    /// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
    /// let status = pool.status();
    /// assert_eq!((status.max_size, status.size), (50, 0));
    /// # }
    /// ```
    pub fn status(&self) -> PoolStatus {
        let shared = &*self.shared;
        shared.gauges.status_of(
            &shared.name,
            shared.sizing.ceiling(),
            shared.slots.counts(),
            shared.idle.waiting(),
            shared.idle.len(),
            shared.gauges.flags().breaker_open(),
        )
    }

    /// The pool's counters and latency histograms, read without taking its
    /// lock.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tidewater_testkit::ScriptedManager;
    /// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
    /// drop(pool.get().await.unwrap());
    /// let stats = pool.stats();
    /// assert_eq!((stats.opened, stats.acquired(), stats.timeouts), (1, 1, 0));
    /// # }
    /// ```
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot(self.shared.idle.hot_stats())
    }

    /// The pool's name, from its configuration.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tidewater_testkit::ScriptedManager;
    /// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
    /// assert_eq!(pool.name(), "default");
    /// # }
    /// ```
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The configuration the pool was built with (`max_size` as built; see
    /// [`status`](Pool::status) for the current one).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tidewater_testkit::ScriptedManager;
    /// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
    /// pool.resize(10).unwrap();
    /// assert_eq!((pool.config().max_size, pool.status().max_size), (50, 10));
    /// # }
    /// ```
    pub fn config(&self) -> &PoolConfig {
        &self.shared.config
    }

    /// Connections held longer than `leak_detection_threshold` right now,
    /// longest first. Empty when leak detection is off.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// # use tidewater_testkit::ScriptedManager;
    /// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
    /// let held = pool.get().await.unwrap();
    /// tokio::time::sleep(std::time::Duration::from_secs(61)).await; // default threshold: 60 s
    /// let suspects = pool.leak_suspects();
    /// assert_eq!(suspects[0].connection_id, held.id());
    /// assert!(suspects[0].caller.file().ends_with(".rs"));
    /// # }
    /// ```
    pub fn leak_suspects(&self) -> Vec<LeakSuspect> {
        let Some(threshold) = self.shared.config.leak_detection_threshold else {
            return Vec::new();
        };
        let now = self.shared.clock.now();
        let mut suspects = self.shared.idle.leak_suspects(now, threshold);
        suspects.extend(self.lock().handed.suspects(now, threshold));
        suspects.sort_by_key(|suspect| std::cmp::Reverse(suspect.held_for));
        suspects
    }

    /// Changes the most connections allowed. Growing serves waiters at once;
    /// shrinking closes idle connections now and surplus ones in use when
    /// they come back. Below `min_idle`, the pool keeps as many idle as the
    /// new size allows (as under the adaptive limit): a fleet coordinator
    /// or an operator shrinking a pool is never refused for it.
    ///
    /// # Errors
    /// A size outside `max_size`'s range (see [`crate::config`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tidewater_testkit::ScriptedManager;
    /// let config = tidewater::PoolConfig { min_idle: 5, ..Default::default() };
    /// let pool = tidewater::Pool::new(ScriptedManager::new(), config).unwrap();
    /// pool.resize(80).unwrap();
    /// assert_eq!(pool.status().max_size, 80);
    /// assert_eq!(pool.resize(0).unwrap_err().allowed(), "1 to 10000");
    /// pool.resize(2).unwrap();
    /// assert_eq!(pool.status().max_size, 2);
    /// # }
    /// ```
    pub fn resize(&self, max_size: u32) -> Result<(), ConfigError> {
        PoolConfig {
            max_size,
            ..self.shared.config.clone()
        }
        .validate_key("max_size")?;
        self.set_ceiling(max_size);
        Ok(())
    }

    /// Lets callers use up to `limit` connections at once: the pool's size
    /// becomes `limit`; surplus idle connections close now, surplus ones
    /// in use as they come back, and waiters get what a rise makes room for.
    pub(crate) fn apply_limit(&self, limit: u32) {
        if self.shared.slots.counts().max == limit {
            return;
        }
        let now = self.shared.clock.now();
        self.with_state(|pool, state| {
            pool.shared.slots.set_max(limit);
            fence(SeqCst); // pairs with the fence in `make_idle`
            let settled = pool.settle(state, now);
            pool.start_openers(state);
            settled
        })
        .finish(self);
    }

    /// Closes the pool: callers waiting get [`Error::Closed`], as do later
    /// `get()` calls; idle connections close at once; connections in use
    /// close when they come back. Waits up to `drain_timeout` for them, and
    /// reports what came back. Calling it again waits again.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tidewater_testkit::ScriptedManager;
    /// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
    /// let held = pool.get().await.unwrap();
    /// let closing = tokio::spawn({
    ///     let pool = pool.clone();
    ///     async move { pool.close().await }
    /// });
    /// tokio::task::yield_now().await;
    /// assert!(matches!(pool.get().await, Err(tidewater::Error::Closed { .. })));
    /// drop(held); // closed on its way back
    /// assert_eq!(closing.await.unwrap().drained, 1);
    /// # }
    /// ```
    pub async fn close(&self) -> CloseReport {
        let error = Error::Closed {
            pool: self.shared.name.clone(),
        };
        let now = self.shared.clock.now();
        let settled = self.with_state(|pool, state| {
            state.closed = true;
            pool.publish(state);
            fence(SeqCst); // pairs with the fence in `make_idle`
            let mut settled = pool.settle(state, now);
            while let Some(waiter) = state.waiters.pop_front(now) {
                settled
                    .deliveries
                    .push((waiter, Err(Box::new(error.clone()))));
            }
            pool.publish(state);
            settled
        });
        let closed_idle = settled.gone.len() as u32;
        settled.finish(self);
        let in_use = self.status().size;
        let deadline = Instant::now() + self.shared.config.drain_timeout;
        loop {
            let notified = self.shared.drained.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.status().size == 0 || rt::timeout_at(deadline, notified).await.is_none() {
                break;
            }
        }
        let still_in_use = self.status().size;
        if still_in_use > 0 {
            tracing::warn!(pool = %self.shared.name, still_in_use, "pool closed with connections still in use");
        }
        CloseReport {
            closed_idle,
            drained: in_use.saturating_sub(still_in_use),
            still_in_use,
        }
    }

    /// The alerts firing now (see [`crate::alerts`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tidewater_testkit::ScriptedManager;
    /// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
    /// assert!(pool.alerts().is_empty());
    /// # }
    /// ```
    pub fn alerts(&self) -> Vec<Alert> {
        self.monitor().alerts.firing()
    }

    /// Sends this pool's alerts, as they fire and resolve, to `sink` too
    /// (besides the tracing events every pool emits).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tidewater_testkit::ScriptedManager;
    /// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
    /// pool.add_alert_sink(|event: &tidewater::alerts::AlertEvent| {
    ///     eprintln!("{} {}", event.alert.name.as_str(), if event.is_firing() { "fired" } else { "resolved" });
    /// });
    /// # }
    /// ```
    pub fn add_alert_sink(&self, sink: impl AlertSink) {
        self.monitor().sinks.push(Arc::new(sink));
    }

    /// Records what the database server can still give this pool, as a
    /// backend measured it; the capacity alert and the metrics use the last
    /// report.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tidewater_testkit::ScriptedManager;
    /// use tidewater::alerts::ServerCapacity;
    /// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
    /// pool.report_capacity(ServerCapacity { max_connections: 100, available: 40 });
    /// assert_eq!(pool.capacity().unwrap().available, 40);
    /// # }
    /// ```
    pub fn report_capacity(&self, capacity: ServerCapacity) {
        self.monitor().capacity = Some(capacity);
    }

    /// The last capacity report, if a backend made one.
    pub fn capacity(&self) -> Option<ServerCapacity> {
        self.monitor().capacity
    }

    /// Records this pool's place in its fleet, as its coordinator last saw
    /// it (see [`crate::fleet`]); `/api/pools`, the metrics, the health
    /// report (`fleet` check: degraded while coordination is lost) and the
    /// dashboard show the last report.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tidewater_testkit::ScriptedManager;
    /// use tidewater::fleet::{FleetState, FleetStatus};
    /// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
    /// pool.report_fleet(FleetStatus {
    ///     fleet: "bank".into(),
    ///     member: "5f0c1a2b".into(),
    ///     state: FleetState::Degraded,
    ///     reason: Some("connection refused".into()),
    ///     grant: 8,
    ///     budget: 33,
    ///     members: Vec::new(),
    /// });
    /// assert_eq!(pool.fleet().unwrap().state, FleetState::Degraded);
    /// # }
    /// ```
    pub fn report_fleet(&self, status: FleetStatus) {
        self.monitor().fleet = Some(status);
    }

    /// The last fleet status, if a coordinator reported one: `None` for a
    /// pool that is in no fleet.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tidewater_testkit::ScriptedManager;
    /// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
    /// assert_eq!(pool.fleet(), None);
    /// # }
    /// ```
    pub fn fleet(&self) -> Option<FleetStatus> {
        self.monitor().fleet.clone()
    }

    pub(crate) fn monitor(&self) -> std::sync::MutexGuard<'_, Monitor> {
        self.shared
            .monitor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn downgrade(&self) -> Weak<Shared<M>> {
        Arc::downgrade(&self.shared)
    }

    /// A handle that does not keep the pool alive: for background work
    /// (a periodic check, say) that should end when the pool goes.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tidewater_testkit::ScriptedManager;
    /// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
    /// let weak = pool.weak();
    /// assert!(weak.upgrade().is_some());
    /// drop(pool);
    /// assert!(weak.upgrade().is_none());
    /// # }
    /// ```
    pub fn weak(&self) -> WeakPool<M> {
        WeakPool(self.downgrade())
    }

    pub(crate) fn from_shared(shared: Arc<Shared<M>>) -> Self {
        Self { shared }
    }
}

/// A [`Pool`] handle that does not keep it alive; see [`Pool::weak`].
pub struct WeakPool<M: Manager>(Weak<Shared<M>>);

impl<M: Manager> WeakPool<M> {
    /// The pool, while something else keeps it alive.
    pub fn upgrade(&self) -> Option<Pool<M>> {
        self.0.upgrade().map(Pool::from_shared)
    }
}

impl<M: Manager> Clone for WeakPool<M> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<M: Manager> std::fmt::Debug for WeakPool<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeakPool").finish_non_exhaustive()
    }
}
