//! The pool: checkout, return, and the rules that tie them together.
//!
//! Two levels of locking. Idle connections and checkout records live in
//! per-thread shards (`idle.rs`): taking an idle connection and giving it
//! back touch only the home shard's lock and cache lines, allocate nothing
//! and spawn nothing. Everything else (the waiter queue, the pool's size,
//! connection attempts, the breaker) lives in [`State`] behind one mutex,
//! taken only on slow paths: waiting, opening or closing a connection,
//! maintenance. No lock is held across an `.await` or a call into the
//! [`Manager`], and the pool's lock is always taken before a shard's.
//!
//! No caller waits while a connection sits idle: a caller that must wait
//! joins the queue (publishing the waiter count) and then looks at the
//! shards once more; a caller returning a connection to its shard reads the
//! waiter count afterwards and, if anyone waits, [`Pool::settle`] hands idle
//! connections to the oldest waiters. A full fence on both sides makes sure
//! at least one of the two sees the other. Closing and shrinking pair with
//! returns the same way.
//!
//! Rules, and where they live:
//! - whether a returned connection may stay: [`must_go`];
//! - what idle connections owe the queue and a closed or shrunk pool:
//!   [`Pool::settle`];
//! - giving a connection to the oldest waiter: [`Pool::hand_over`];
//! - how many connection attempts to run: [`Pool::wanted_openers`];
//!   the attempts themselves: `connect.rs`;
//! - validation and reset on checkout: `guard.rs`;
//! - idle timeout, lifetime, keepalive, leaks, min_idle: `maintenance.rs`.

use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

use crate::alerts::{Alert, AlertSink, Monitor, ServerCapacity};
use crate::backoff::Backoff;
use crate::breaker::Breaker;
use crate::config::{ConfigError, PoolConfig};
use crate::error::Error;
use crate::guard::{Checkout, Conn, PooledConnection, Prepared};
use crate::idle::Shards;
use crate::leaks::LeakSuspect;
use crate::manager::Manager;
use crate::rt::{self, Instant, Mutex, MutexGuard, fence};
use crate::stats::{CloseReason, Counts, Gauges, PoolStatus, Stats, StatsSnapshot};
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

/// Aligned so that the `Arc`'s reference counts, which every checkout and
/// return update, sit alone on their cache line instead of sharing it with
/// the configuration and gauges that every checkout reads.
#[repr(align(128))]
pub(crate) struct Shared<M: Manager> {
    pub(crate) manager: Arc<M>,
    pub(crate) config: PoolConfig,
    pub(crate) name: Arc<str>,
    state: Mutex<State<M::Connection>>,
    pub(crate) idle: Shards<M::Connection>,
    pub(crate) gauges: Gauges,
    pub(crate) stats: Stats,
    drained: Notify,
    pub(crate) monitor: std::sync::Mutex<Monitor>,
}

/// What a served waiter receives.
pub(crate) type Served<C> = Result<Checkout<C>, Error>;

/// Everything but the idle connections, under the pool's lock.
pub(crate) struct State<C> {
    pub(crate) waiters: WaiterQueue<Served<C>>,
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
    fn counts(&self) -> Counts {
        Counts {
            size: self.size,
            waiters: self.waiters.len(),
            opening: self.opening,
            max_size: self.max_size,
        }
    }
}

/// Why a connection coming back must be closed instead of kept, if it must:
/// the pool is closed, the connection's lifetime is over, or the pool has
/// shrunk below its size.
pub(crate) fn must_go<C>(
    closed: bool,
    size: u32,
    max_size: u32,
    conn: &Conn<C>,
    now: Instant,
) -> Option<CloseReason> {
    if closed {
        Some(CloseReason::PoolClosed)
    } else if conn.expired(now) {
        Some(CloseReason::MaxLifetime)
    } else if size > max_size {
        Some(CloseReason::Resized)
    } else {
        None
    }
}

/// What a change under the pool's lock leaves to do once it is released.
#[must_use = "wakers to wake and connections to close"]
pub(crate) struct Settled<C> {
    wakers: Vec<Waker>,
    gone: Vec<(Conn<C>, CloseReason)>,
    /// The pool is closed and its last connection is gone.
    drained: bool,
}

impl<C> Settled<C> {
    fn new() -> Self {
        Self {
            wakers: Vec::new(),
            gone: Vec::new(),
            drained: false,
        }
    }

    /// Wakes the waiters served, tells `close()` when the pool is drained,
    /// and closes the connections that had to go.
    pub(crate) fn finish<M: Manager<Connection = C>>(self, pool: &Pool<M>) {
        self.wakers.into_iter().for_each(Waker::wake);
        if self.drained {
            pool.shared.drained.notify_waiters();
        }
        for (conn, reason) in self.gone {
            pool.discard(conn, reason);
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
            waiters: WaiterQueue::new(),
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
        let monitor = Monitor::new(&config.alerts);
        let pool = Self {
            shared: Arc::new(Shared {
                manager: Arc::new(manager),
                name: config.name.as_str().into(),
                idle: Shards::new(config.idle_order),
                gauges: Gauges::new(state.counts()),
                config,
                state: Mutex::new(state),
                stats: Stats::new(),
                drained: Notify::new(),
                monitor: std::sync::Mutex::new(monitor),
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
                Prepared::Ready { checked } if waited || checked => {
                    self.shared.stats.record_wait(start.elapsed());
                    return Ok(conn);
                }
                Prepared::Ready { .. } => {
                    self.shared.idle.count_direct();
                    return Ok(conn);
                }
                Prepared::Discard => now = Instant::now(),
                Prepared::OutOfTime => return Err(self.timed_out(start)),
            }
        }
    }

    /// An idle connection (from the shards, without the pool's lock when
    /// nobody waits), or a place in the queue.
    fn find(
        &self,
        caller: &'static Location<'static>,
        now: Instant,
        wait: bool,
    ) -> Result<Found<M::Connection>, Error> {
        let shared = &*self.shared;
        if shared.gauges.may_take_idle()
            && let Some(checkout) = shared.idle.take(caller, now)
        {
            return Ok(Found::Idle(checkout));
        }
        let mut state = self.lock();
        if state.closed {
            return Err(Error::Closed {
                pool: shared.name.clone(),
            });
        }
        let key = state.waiters.push(caller);
        self.publish(&state);
        fence(SeqCst); // pairs with the fence in `release`: see the module docs
        let took = shared.idle.take(caller, now);
        // Each connection the pool may still open serves one caller; beyond
        // those, at most `max_waiters` wait for one to come back.
        let room = state.max_size.saturating_sub(state.size);
        let too_many = state.waiters.len() > shared.config.max_waiters.saturating_add(room);
        if took.is_none() && wait && !state.breaker.is_open() && !too_many {
            self.start_openers(&mut state);
            self.publish(&state);
            return Ok(Found::Queued(key));
        }
        let _ = state.waiters.cancel(key);
        self.publish(&state);
        if let Some(checkout) = took {
            return Ok(Found::Idle(checkout));
        }
        let status = self.status_of(&state);
        Err(if !wait {
            Error::NoIdleConnection { status }
        } else if state.breaker.is_open() {
            shared.stats.rejected_unavailable.fetch_add(1, Relaxed);
            Error::Unavailable {
                cause: state
                    .breaker
                    .last_error()
                    .cloned()
                    .expect("an open breaker has a cause"),
                failures: state.breaker.failures(),
                retry_after: state.breaker.retry_after(now),
                status,
            }
        } else {
            shared.stats.rejected_queue_full.fetch_add(1, Relaxed);
            Error::QueueFull { status }
        })
    }

    fn timed_out(&self, start: Instant) -> Error {
        self.shared.stats.timeouts.fetch_add(1, Relaxed);
        let state = self.lock();
        Error::Timeout {
            waited: start.elapsed(),
            status: self.status_of(&state),
            last_connect_error: state.breaker.last_error().cloned(),
        }
    }

    /// Takes back a connection from a guard. Normally it goes back to the
    /// home shard without the pool's lock; it goes through the lock when
    /// callers wait (to the oldest), or when it must be closed: `forced`,
    /// broken, returned while panicking, or as [`must_go`] says. A
    /// connection to close is returned with the reason, for the caller to
    /// close (or hand out, for `detach`); its slot is already free.
    pub(crate) fn release(
        &self,
        checkout: Checkout<M::Connection>,
        forced: Option<CloseReason>,
        keepalive: bool,
    ) -> Option<(Conn<M::Connection>, CloseReason)> {
        let shared = &*self.shared;
        let now = Instant::now();
        let Checkout {
            mut conn,
            record,
            since,
        } = checkout;
        let mut reason = forced;
        if reason.is_none() {
            if std::thread::panicking() {
                reason = Some(CloseReason::Panicked);
            } else if shared.manager.is_broken(&mut conn.raw) {
                reason = Some(CloseReason::Broken);
            } else if !keepalive {
                conn.needs_reset = shared.manager.needs_reset(&mut conn.raw);
                conn.last_used = now;
                conn.last_checked = now;
            }
        }
        if !keepalive {
            shared.idle.record_use(now.saturating_duration_since(since));
        }

        let (reported, gone) = if reason.is_none() && !keepalive && self.may_stay(&conn, now) {
            let reported = shared.idle.check_in(record, Some(conn));
            fence(SeqCst); // pairs with the fence in `find`, `close` and `resize`
            if shared.gauges.needs_settling() {
                self.with_state(|pool, state| pool.settle(state, now))
                    .finish(self);
            }
            (reported, None)
        } else {
            let mut state = self.lock();
            if keepalive {
                state.pinging -= 1;
            }
            let reported = shared.idle.check_in(record, None);
            let mut settled = self.check_in(&mut state, conn, reason, now);
            self.publish(&state);
            drop(state);
            let gone = settled.gone.pop();
            settled.finish(self);
            (reported, gone)
        };
        if let Some(record) = reported.filter(|record| record.reported) {
            tracing::warn!(
                pool = %shared.name,
                connection = record.connection_id,
                caller = %record.caller,
                held_for = ?now.saturating_duration_since(record.since),
                "leak suspect returned to the pool"
            );
        }
        gone
    }

    /// Whether a returned connection can go straight back to a shard: nobody
    /// waits and [`must_go`] has no objection, as far as the gauges tell.
    fn may_stay(&self, conn: &Conn<M::Connection>, now: Instant) -> bool {
        let gauges = &self.shared.gauges;
        let counts = gauges.counts();
        counts.waiters == 0
            && must_go(gauges.closed(), counts.size, counts.max_size, conn, now).is_none()
    }

    /// Under the lock: a connection coming back from a checkout (its record
    /// already removed) goes to the oldest waiter or the idle list, unless
    /// `reason` or [`must_go`] says it must be closed; its slot is then freed.
    pub(crate) fn check_in(
        &self,
        state: &mut State<M::Connection>,
        conn: Conn<M::Connection>,
        reason: Option<CloseReason>,
        now: Instant,
    ) -> Settled<M::Connection> {
        let mut settled = Settled::new();
        match reason.or_else(|| must_go(state.closed, state.size, state.max_size, &conn, now)) {
            None => settled.wakers.extend(self.hand_over(state, conn, now)),
            Some(reason) => {
                state.size -= 1;
                self.start_openers(state);
                settled.gone.push((conn, reason));
            }
        }
        settled.drained = state.closed && state.size == 0;
        settled
    }

    /// Under the lock: gives a usable connection that is in no shard to the
    /// oldest waiter (returning its waker), or makes it idle.
    pub(crate) fn hand_over(
        &self,
        state: &mut State<M::Connection>,
        conn: Conn<M::Connection>,
        now: Instant,
    ) -> Option<Waker> {
        match state.waiters.front_caller() {
            None => {
                self.shared.idle.push(conn);
                None
            }
            Some(caller) => {
                let checkout = self.shared.idle.check_out(conn, caller, now);
                state.waiters.serve_front(Ok(checkout)).ok().flatten()
            }
        }
    }

    /// Under the lock: brings the idle connections in line with the pool.
    /// A closed pool closes them all; a pool above its size closes the
    /// surplus; waiting callers get the rest, oldest first.
    pub(crate) fn settle(
        &self,
        state: &mut State<M::Connection>,
        now: Instant,
    ) -> Settled<M::Connection> {
        let mut settled = Settled::new();
        let (reason, surplus) = if state.closed {
            (CloseReason::PoolClosed, usize::MAX)
        } else {
            (
                CloseReason::Resized,
                state.size.saturating_sub(state.max_size) as usize,
            )
        };
        if surplus > 0 {
            let retired = self
                .shared
                .idle
                .take_where(|_, picked| (picked < surplus).then_some(reason));
            state.size -= retired.len() as u32;
            settled.gone.extend(retired);
        }
        while let Some(caller) = state.waiters.front_caller() {
            let Some(checkout) = self.shared.idle.take(caller, now) else {
                break;
            };
            settled
                .wakers
                .extend(state.waiters.serve_front(Ok(checkout)).ok().flatten());
        }
        if !settled.gone.is_empty() {
            self.start_openers(state);
        }
        settled.drained = state.closed && state.size == 0;
        settled
    }

    /// Closes a connection the pool no longer counts.
    pub(crate) fn discard(&self, conn: Conn<M::Connection>, reason: CloseReason) {
        tracing::debug!(pool = %self.shared.name, connection = conn.id, reason = reason.as_str(), "closing connection");
        self.shared.stats.count_closed(reason, 1);
        drop(conn);
    }

    /// How many connection attempts should be running now: enough for the
    /// callers waiting and the `min_idle` shortfall, within the room left
    /// and `max_connecting`; one probe while the breaker is open.
    pub(crate) fn wanted_openers(&self, state: &State<M::Connection>) -> u32 {
        let config = &self.shared.config;
        if state.closed {
            return 0;
        }
        let demand = if state.breaker.is_open() {
            1
        } else {
            let idle = self.shared.idle.len() + state.pinging;
            state
                .waiters
                .len()
                .max(config.min_idle.saturating_sub(idle))
        };
        demand
            .min(config.max_connecting)
            .min(state.max_size.saturating_sub(state.size))
    }

    /// Starts connection attempts up to [`Pool::wanted_openers`].
    pub(crate) fn start_openers(&self, state: &mut State<M::Connection>) {
        let wanted = self.wanted_openers(state);
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
        self.shared.gauges.publish(state.counts(), state.closed);
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

    /// The status as `state` has it (under the lock).
    fn status_of(&self, state: &State<M::Connection>) -> PoolStatus {
        self.shared.gauges.status_of(
            &self.shared.name,
            state.counts(),
            self.shared.idle.len(),
            state.breaker.is_open(),
        )
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
        self.shared
            .gauges
            .status(&self.shared.name, self.shared.idle.len())
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
        let (acquired_direct, use_time) = self.shared.idle.hot_stats();
        self.shared.stats.snapshot(acquired_direct, use_time)
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
        let mut suspects = self.shared.idle.leak_suspects(Instant::now(), threshold);
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
        let now = Instant::now();
        self.with_state(|pool, state| {
            state.max_size = max_size;
            pool.publish(state);
            fence(SeqCst); // pairs with the fence in `release`
            let settled = pool.settle(state, now);
            pool.start_openers(state);
            settled
        })
        .finish(self);
        Ok(())
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
        let now = Instant::now();
        let settled = self.with_state(|pool, state| {
            state.closed = true;
            pool.publish(state);
            fence(SeqCst); // pairs with the fence in `release`
            let mut settled = pool.settle(state, now);
            settled
                .wakers
                .extend(state.waiters.serve_all(|| Err(error.clone())));
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
            drained: in_use - still_in_use,
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
        let settled = pool.with_state(|pool, state| match state.waiters.cancel(key) {
            Some(Ok(checkout)) => {
                let _ = pool.shared.idle.check_in(checkout.record, None);
                Some(pool.check_in(state, checkout.conn, None, Instant::now()))
            }
            Some(Err(_)) | None => None,
        });
        if let Some(settled) = settled {
            settled.finish(pool);
        }
    }
}
