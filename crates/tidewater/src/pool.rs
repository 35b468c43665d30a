//! The pool: checkout, return, and the one lock that orders them.
//!
//! All of the pool's bookkeeping lives in [`State`] behind a single mutex,
//! held only for a few pointer moves at a time and never across an `.await`
//! or a call into the [`Manager`]. Taking an idle connection and giving it
//! back each lock it once, allocate nothing and spawn nothing.
//!
//! Rules, and where they live:
//! - a returned connection goes to the oldest waiter, else to the idle list
//!   ([`Pool::put_back`]), or is discarded ([`Pool::release`]);
//! - connection attempts start when there is demand and room
//!   ([`State::wanted_openers`], [`Pool::start_openers`]), in `connect.rs`;
//! - a checkout validates or resets first when needed (`guard.rs`);
//! - background rules (idle timeout, lifetime, keepalive, leaks, min_idle)
//!   run in `maintenance.rs`.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

use crate::backoff::Backoff;
use crate::breaker::Breaker;
use crate::config::{ConfigError, IdleOrder, PoolConfig};
use crate::error::Error;
use crate::guard::{Checkout, Conn, PooledConnection, Prepared};
use crate::leaks::{Checkouts, LeakSuspect, Record};
use crate::manager::Manager;
use crate::rt::{self, Instant, Mutex, MutexGuard};
use crate::stats::{self, CloseReason, Counts, Gauges, PoolStatus, Stats, StatsSnapshot};
use crate::waiters::{WaiterKey, WaiterQueue};

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

pub(crate) struct Shared<M: Manager> {
    pub(crate) manager: Arc<M>,
    pub(crate) config: PoolConfig,
    pub(crate) name: Arc<str>,
    state: Mutex<State<M::Connection>>,
    pub(crate) gauges: Gauges,
    pub(crate) stats: Stats,
    drained: Notify,
}

/// What a served waiter receives.
pub(crate) type Served<C> = Result<Checkout<C>, Error>;

pub(crate) struct State<C> {
    pub(crate) idle: VecDeque<Conn<C>>,
    pub(crate) waiters: WaiterQueue<Served<C>>,
    pub(crate) checkouts: Checkouts,
    /// Connections open: idle, checked out, or being validated.
    pub(crate) size: u32,
    /// Connection attempts in flight or backing off. `size + opening` stays
    /// within `max_size` (after a shrink, `size` alone may exceed it until
    /// connections come back).
    pub(crate) opening: u32,
    /// Idle connections out for a keepalive ping: still idle for `min_idle`.
    pub(crate) pinging: u32,
    pub(crate) max_size: u32,
    pub(crate) closed: bool,
    pub(crate) breaker: Breaker,
    next_id: u64,
}

impl<C> State<C> {
    /// How many connection attempts should be running now: enough for the
    /// callers waiting and the `min_idle` shortfall, within the room left
    /// and `max_connecting`; one probe while the breaker is open.
    pub(crate) fn wanted_openers(&self, config: &PoolConfig) -> u32 {
        if self.closed {
            return 0;
        }
        let demand = if self.breaker.is_open() {
            1
        } else {
            let idle = self.idle.len() as u32 + self.pinging;
            let idle_shortfall = config.min_idle.saturating_sub(idle);
            self.waiters.len().max(idle_shortfall)
        };
        demand
            .min(config.max_connecting)
            .min(self.max_size.saturating_sub(self.size))
    }

    fn counts(&self) -> Counts {
        Counts {
            size: self.size,
            idle: self.idle.len() as u32,
            waiters: self.waiters.len(),
            opening: self.opening,
        }
    }

    fn status(&self, name: &Arc<str>) -> PoolStatus {
        PoolStatus {
            pool: name.clone(),
            max_size: self.max_size,
            size: self.size,
            in_use: self.size - self.idle.len() as u32,
            idle: self.idle.len() as u32,
            opening: self.opening,
            waiters: self.waiters.len(),
            breaker_open: self.breaker.is_open(),
        }
    }

    fn take_idle(&mut self, order: IdleOrder) -> Option<Conn<C>> {
        match order {
            IdleOrder::Lifo => self.idle.pop_back(),
            IdleOrder::Fifo => self.idle.pop_front(),
        }
    }

    /// Removes idle connections for which `retire` names a reason.
    pub(crate) fn retire_idle(
        &mut self,
        mut retire: impl FnMut(&Conn<C>, usize) -> Option<CloseReason>,
    ) -> Vec<(Conn<C>, CloseReason)> {
        let mut retired = Vec::new();
        let mut kept = VecDeque::with_capacity(self.idle.len());
        for conn in self.idle.drain(..) {
            match retire(&conn, kept.len() + retired.len()) {
                Some(reason) => retired.push((conn, reason)),
                None => kept.push_back(conn),
            }
        }
        self.idle = kept;
        self.size -= retired.len() as u32;
        retired
    }

    /// Takes out the idle connections `pick` selects, each as a checkout
    /// recorded for `caller`.
    pub(crate) fn check_out_idle(
        &mut self,
        caller: &'static Location<'static>,
        now: Instant,
        mut pick: impl FnMut(&Conn<C>) -> bool,
    ) -> Vec<Checkout<C>> {
        let mut picked = Vec::new();
        let mut kept = VecDeque::with_capacity(self.idle.len());
        for conn in self.idle.drain(..) {
            if pick(&conn) {
                picked.push(conn)
            } else {
                kept.push_back(conn)
            }
        }
        self.idle = kept;
        picked
            .into_iter()
            .map(|conn| self.check_out(conn, caller, now))
            .collect()
    }

    fn check_out(
        &mut self,
        conn: Conn<C>,
        caller: &'static Location<'static>,
        since: Instant,
    ) -> Checkout<C> {
        let record = Record {
            caller,
            since,
            connection_id: conn.id,
            reported: false,
        };
        Checkout {
            key: self.checkouts.insert(record),
            since,
            conn,
        }
    }

    fn unavailable(&self, name: &Arc<str>, now: Instant) -> Error {
        Error::Unavailable {
            cause: self
                .breaker
                .last_error()
                .cloned()
                .expect("an open breaker has a cause"),
            failures: self.breaker.failures(),
            retry_after: self.breaker.retry_after(now),
            status: self.status(name),
        }
    }
}

/// What a checkout attempt found.
enum Found<C> {
    Idle(Checkout<C>),
    Queued(WaiterKey),
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
        config.validate()?;
        let backoff = Backoff {
            initial: config.connect_backoff_initial,
            max: config.connect_backoff_max,
        };
        let state = State {
            idle: VecDeque::with_capacity(config.max_size as usize),
            waiters: WaiterQueue::new(),
            checkouts: Checkouts::default(),
            size: 0,
            opening: 0,
            pinging: 0,
            max_size: config.max_size,
            closed: false,
            breaker: Breaker::new(
                config.breaker_enabled,
                config.breaker_failure_threshold,
                backoff,
            ),
            next_id: 0,
        };
        let pool = Self {
            shared: Arc::new(Shared {
                manager: Arc::new(manager),
                name: config.name.as_str().into(),
                gauges: Gauges::new(config.max_size),
                config,
                state: Mutex::new(state),
                stats: Stats::new(),
                drained: Notify::new(),
            }),
        };
        #[cfg(not(tidewater_shuttle))]
        crate::maintenance::start(&pool);
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

    async fn acquire(
        &self,
        caller: &'static Location<'static>,
        wait: bool,
    ) -> Result<PooledConnection<M>, Error> {
        let start = Instant::now();
        let deadline = start + self.shared.config.acquire_timeout;
        let mut now = start;
        let mut waited = false;
        loop {
            let checkout = match self.find(caller, now, wait)? {
                Found::Idle(checkout) => checkout,
                Found::Queued(key) => {
                    waited = true;
                    let waiting = Waiting {
                        pool: self,
                        key: Some(key),
                    };
                    match rt::timeout_at(deadline, waiting).await {
                        Some(served) => served?,
                        None => return Err(self.timed_out(start)),
                    }
                }
            };
            let mut conn = PooledConnection::new(self.clone(), checkout);
            match conn.prepare(deadline).await {
                Prepared::Ready { checked } => {
                    let slow = waited || checked;
                    stats::record_wait(&self.shared.stats, slow.then(|| start.elapsed()));
                    return Ok(conn);
                }
                Prepared::Discard => now = Instant::now(),
                Prepared::OutOfTime => return Err(self.timed_out(start)),
            }
        }
    }

    /// Under the lock: an idle connection, or a place in the queue.
    fn find(
        &self,
        caller: &'static Location<'static>,
        now: Instant,
        wait: bool,
    ) -> Result<Found<M::Connection>, Error> {
        let shared = &*self.shared;
        let mut state = self.lock();
        if state.closed {
            return Err(Error::Closed {
                pool: shared.name.clone(),
            });
        }
        if let Some(conn) = state.take_idle(shared.config.idle_order) {
            let checkout = state.check_out(conn, caller, now);
            self.publish(&state);
            return Ok(Found::Idle(checkout));
        }
        if !wait {
            return Err(Error::NoIdleConnection {
                status: state.status(&shared.name),
            });
        }
        if state.breaker.is_open() {
            shared.stats.rejected_unavailable.fetch_add(1, Relaxed);
            return Err(state.unavailable(&shared.name, now));
        }
        if state.waiters.len() >= shared.config.max_waiters {
            shared.stats.rejected_queue_full.fetch_add(1, Relaxed);
            return Err(Error::QueueFull {
                status: state.status(&shared.name),
            });
        }
        let key = state.waiters.push(caller);
        self.start_openers(&mut state);
        self.publish(&state);
        Ok(Found::Queued(key))
    }

    fn timed_out(&self, start: Instant) -> Error {
        self.shared.stats.timeouts.fetch_add(1, Relaxed);
        let state = self.lock();
        Error::Timeout {
            waited: start.elapsed(),
            status: state.status(&self.shared.name),
            last_connect_error: state.breaker.last_error().cloned(),
        }
    }

    /// Takes back a connection from a guard: it goes to the oldest waiter or
    /// the idle list, unless it must go (`forced`, broken, returned while
    /// panicking, expired, surplus after a shrink, pool closed). A connection
    /// that must go is returned with the reason, for the caller to close
    /// (or hand out, for `detach`); its slot is already free.
    pub(crate) fn release(
        &self,
        mut checkout: Checkout<M::Connection>,
        forced: Option<CloseReason>,
        keepalive: bool,
    ) -> Option<(Conn<M::Connection>, CloseReason)> {
        let now = Instant::now();
        let manager = &*self.shared.manager;
        let conn = &mut checkout.conn;
        let mut reason = forced;
        if reason.is_none() {
            if std::thread::panicking() {
                reason = Some(CloseReason::Panicked);
            } else if manager.is_broken(&mut conn.raw) {
                reason = Some(CloseReason::Broken);
            } else if !keepalive {
                conn.needs_reset = manager.needs_reset(&mut conn.raw);
                conn.last_used = now;
                conn.last_checked = now;
            }
        }

        let mut state = self.lock();
        let record = state.checkouts.remove(checkout.key);
        if keepalive {
            state.pinging -= 1;
        }
        let returned = self.check_in(&mut state, checkout.conn, reason, now);
        self.publish(&state);
        drop(state);
        let gone = returned.finish(self);

        if !keepalive {
            self.shared
                .stats
                .use_time
                .record(now.saturating_duration_since(checkout.since));
        }
        if let Some(record) = record.filter(|record| record.reported) {
            tracing::warn!(
                pool = %self.shared.name,
                connection = record.connection_id,
                caller = %record.caller,
                held_for = ?now.saturating_duration_since(record.since),
                "leak suspect returned to the pool"
            );
        }
        gone
    }

    /// Under the lock, a connection coming back from a checkout: it goes to
    /// the oldest waiter or the idle list, unless `reason` says it must go,
    /// or the pool says so (closed, lifetime over, surplus after a shrink).
    /// One that must go has its slot freed already.
    fn check_in(
        &self,
        state: &mut State<M::Connection>,
        conn: Conn<M::Connection>,
        reason: Option<CloseReason>,
        now: Instant,
    ) -> CheckedIn<M::Connection> {
        let reason = reason.or_else(|| {
            if state.closed {
                Some(CloseReason::PoolClosed)
            } else if conn.expired(now) {
                Some(CloseReason::MaxLifetime)
            } else if state.size > state.max_size {
                Some(CloseReason::Resized)
            } else {
                None
            }
        });
        let (waker, gone) = match reason {
            None => (self.put_back(state, conn, now), None),
            Some(reason) => {
                state.size -= 1;
                self.start_openers(state);
                (None, Some((conn, reason)))
            }
        };
        CheckedIn {
            waker,
            gone,
            drained: state.closed && state.size == 0,
        }
    }

    /// Hands a usable connection to the oldest waiter (returning its waker),
    /// or makes it idle.
    pub(crate) fn put_back(
        &self,
        state: &mut State<M::Connection>,
        conn: Conn<M::Connection>,
        now: Instant,
    ) -> Option<Waker> {
        match state.waiters.front_caller() {
            None => {
                state.idle.push_back(conn);
                None
            }
            Some(caller) => {
                let checkout = state.check_out(conn, caller, now);
                state.waiters.serve_front(Ok(checkout)).ok().flatten()
            }
        }
    }

    /// Closes a connection the pool no longer counts.
    pub(crate) fn discard(&self, conn: Conn<M::Connection>, reason: CloseReason) {
        tracing::debug!(pool = %self.shared.name, connection = conn.id, reason = reason.as_str(), "closing connection");
        self.shared.stats.count_closed(reason, 1);
        drop(conn);
    }

    /// Starts connection attempts up to [`State::wanted_openers`].
    pub(crate) fn start_openers(&self, state: &mut State<M::Connection>) {
        let wanted = state.wanted_openers(&self.shared.config);
        while state.opening < wanted {
            state.opening += 1;
            rt::spawn(crate::connect::run_opener(
                Arc::downgrade(&self.shared),
                self.shared.manager.clone(),
            ));
        }
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
        self.publish(&state);
        result
    }

    fn publish(&self, state: &State<M::Connection>) {
        self.shared.gauges.publish(state.counts());
    }

    /// A fresh id for a new connection, and its lifetime's end.
    pub(crate) fn new_conn(
        &self,
        state: &mut State<M::Connection>,
        raw: M::Connection,
        now: Instant,
    ) -> Conn<M::Connection> {
        state.next_id += 1;
        let config = &self.shared.config;
        let expires_at = config.max_lifetime.map(|lifetime| {
            now + lifetime.mul_f64(1.0 - config.max_lifetime_jitter * fastrand::f64())
        });
        Conn::new(raw, state.next_id, now, expires_at)
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
        self.shared.gauges.status(&self.shared.name)
    }

    /// The pool's counters and latency histograms, read without taking its
    /// lock.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// The pool's name, from its configuration.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The configuration the pool was built with (`max_size` as built; see
    /// [`status`](Pool::status) for the current one).
    pub fn config(&self) -> &PoolConfig {
        &self.shared.config
    }

    /// Connections held longer than `leak_detection_threshold` right now,
    /// longest first. Empty when leak detection is off.
    pub fn leak_suspects(&self) -> Vec<LeakSuspect> {
        let Some(threshold) = self.shared.config.leak_detection_threshold else {
            return Vec::new();
        };
        let mut suspects = self.lock().checkouts.suspects(Instant::now(), threshold);
        suspects.sort_by_key(|suspect| std::cmp::Reverse(suspect.held_for));
        suspects
    }

    /// Changes the most connections allowed. Growing serves waiters at once;
    /// shrinking closes idle connections now and surplus ones in use when
    /// they come back.
    ///
    /// # Errors
    /// A size outside 1 to 10 000, or below `min_idle`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tidewater_testkit::ScriptedManager;
    /// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
    /// pool.resize(80).unwrap();
    /// assert_eq!(pool.status().max_size, 80);
    /// assert_eq!(pool.resize(0).unwrap_err().key(), "max_size");
    /// # }
    /// ```
    pub fn resize(&self, max_size: u32) -> Result<(), ConfigError> {
        PoolConfig {
            max_size,
            ..self.shared.config.clone()
        }
        .validate()?;
        let retired = self.with_state(|pool, state| {
            state.max_size = max_size;
            let surplus = state.size.saturating_sub(max_size) as usize;
            let retired =
                state.retire_idle(|_, seen| (seen < surplus).then_some(CloseReason::Resized));
            pool.start_openers(state);
            retired
        });
        self.shared.gauges.set_max_size(max_size);
        for (conn, reason) in retired {
            self.discard(conn, reason);
        }
        Ok(())
    }

    /// Closes the pool: callers waiting get [`Error::Closed`], as do later
    /// `get()` calls; idle connections close at once; connections in use
    /// close when they come back. Waits up to `drain_timeout` for them, and
    /// reports what came back. Calling it again waits again.
    pub async fn close(&self) -> CloseReport {
        let error = Error::Closed {
            pool: self.shared.name.clone(),
        };
        let (wakers, idle) = self.with_state(|_, state| {
            state.closed = true;
            let wakers = state.waiters.serve_all(|| Err(error.clone()));
            let idle: Vec<_> = state.idle.drain(..).collect();
            state.size -= idle.len() as u32;
            (wakers, idle)
        });
        wakers.into_iter().for_each(Waker::wake);
        let closed_idle = idle.len() as u32;
        for conn in idle {
            self.discard(conn, CloseReason::PoolClosed);
        }
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
            drained: in_use - still_in_use,
            still_in_use,
        }
    }

    pub(crate) fn downgrade(&self) -> Weak<Shared<M>> {
        Arc::downgrade(&self.shared)
    }

    pub(crate) fn from_shared(shared: Arc<Shared<M>>) -> Self {
        Self { shared }
    }
}

/// A caller's place in the queue; leaving the queue (or passing on a
/// connection that was already handed to it) happens in its drop.
struct Waiting<'a, M: Manager> {
    pool: &'a Pool<M>,
    key: Option<WaiterKey>,
}

impl<M: Manager> Future for Waiting<'_, M> {
    type Output = Served<M::Connection>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let key = self.key.expect("polled after completion");
        let served = self.pool.lock().waiters.poll(key, cx.waker());
        match served {
            Some(served) => {
                self.key = None;
                Poll::Ready(served)
            }
            None => Poll::Pending,
        }
    }
}

impl<M: Manager> Drop for Waiting<'_, M> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let pool = self.pool;
        // A connection already handed to this waiter comes back as from a
        // guard: the pool may have closed or shrunk since.
        let returned = pool.with_state(|pool, state| match state.waiters.cancel(key) {
            Some(Ok(checkout)) => {
                state.checkouts.remove(checkout.key);
                Some(pool.check_in(state, checkout.conn, None, Instant::now()))
            }
            Some(Err(_)) | None => None,
        });
        if let Some((conn, reason)) = returned.and_then(|returned| returned.finish(pool)) {
            pool.discard(conn, reason);
        }
    }
}

/// What [`Pool::check_in`] decided, to carry out once the lock is released.
struct CheckedIn<C> {
    /// The waiter that was handed the connection.
    waker: Option<Waker>,
    /// The connection to close, and why.
    gone: Option<(Conn<C>, CloseReason)>,
    /// The pool is closed and its last connection is gone.
    drained: bool,
}

impl<C> CheckedIn<C> {
    /// Wakes the waiter and `close()`; returns the connection to close.
    fn finish<M: Manager<Connection = C>>(self, pool: &Pool<M>) -> Option<(Conn<C>, CloseReason)> {
        if let Some(waker) = self.waker {
            waker.wake();
        }
        if self.drained {
            pool.shared.drained.notify_waiters();
        }
        self.gone
    }
}
