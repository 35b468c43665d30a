//! Lock-free statistics: counters, latency histograms and the pool's gauges.
//!
//! Writers are the pool's acquire and release paths (relaxed atomic adds);
//! readers (metrics exporters, health checks) never take the pool's lock.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{
    AtomicU64,
    Ordering::{Relaxed, SeqCst},
};

use crate::rt::AtomicU64 as SyncU64;
use crate::slots::SlotCounts;

use crate::histogram::{Histogram, HistogramSnapshot};
use crate::idle::HotStats;

/// The pool's numbers at one moment: attached to every error, and returned
/// by [`Pool::status`](crate::Pool::status).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # use tidewater_testkit::ScriptedManager;
/// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
/// let conn = pool.get().await.unwrap();
/// let status = pool.status();
/// assert_eq!((status.size, status.in_use, status.idle), (1, 1, 0));
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PoolStatus {
    /// The pool's name.
    pub pool: Arc<str>,
    /// Most connections allowed: `max_size`, or the last `resize()`.
    pub max_size: u32,
    /// Connections callers may use at once now: `max_size`, or the
    /// adaptive limit below it (see [`Pool::sizing`](crate::Pool::sizing)).
    pub limit: u32,
    /// Connections open (in use plus idle).
    pub size: u32,
    /// Connections checked out.
    pub in_use: u32,
    /// Connections ready in the pool.
    pub idle: u32,
    /// Connection attempts in flight (or backing off before a retry).
    pub opening: u32,
    /// Callers waiting for a connection.
    pub waiters: u32,
    /// Whether the circuit breaker is open (the database looks unreachable).
    pub breaker_open: bool,
}

impl fmt::Display for PoolStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pool {:?}: {} of {} open, {} in use, {} idle, {} opening, {} waiting",
            self.pool, self.size, self.max_size, self.in_use, self.idle, self.opening, self.waiters
        )?;
        if self.limit < self.max_size {
            write!(f, ", limit {}", self.limit)?;
        }
        if self.breaker_open {
            f.write_str(", breaker open")?;
        }
        Ok(())
    }
}

/// Why the pool closed (or gave up) a connection.
///
/// ```
/// use tidewater::CloseReason;
/// assert_eq!(CloseReason::IdleTimeout.as_str(), "idle_timeout");
/// assert_eq!(CloseReason::ALL.len(), 11);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The manager reported it broken.
    Broken,
    /// Returned by a thread that was panicking: the work on it stopped at an
    /// unknown point.
    Panicked,
    /// Its checkout was cancelled during validation or reset.
    Interrupted,
    /// Validation failed or timed out.
    ValidationFailed,
    /// Session reset failed or timed out.
    ResetFailed,
    /// Idle longer than `idle_timeout`.
    IdleTimeout,
    /// Older than its (jittered) `max_lifetime`.
    MaxLifetime,
    /// The pool was resized below its size.
    Resized,
    /// The adaptive limit fell below the pool's size.
    Limited,
    /// The pool was closed.
    PoolClosed,
    /// Taken out of the pool for good by
    /// [`PooledConnection::detach`](crate::PooledConnection::detach).
    Detached,
}

impl CloseReason {
    /// Every reason, in a fixed order.
    pub const ALL: [CloseReason; 11] = [
        Self::Broken,
        Self::Panicked,
        Self::Interrupted,
        Self::ValidationFailed,
        Self::ResetFailed,
        Self::IdleTimeout,
        Self::MaxLifetime,
        Self::Resized,
        Self::Limited,
        Self::PoolClosed,
        Self::Detached,
    ];

    /// The reason as a metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Broken => "broken",
            Self::Panicked => "panicked",
            Self::Interrupted => "interrupted",
            Self::ValidationFailed => "validation_failed",
            Self::ResetFailed => "reset_failed",
            Self::IdleTimeout => "idle_timeout",
            Self::MaxLifetime => "max_lifetime",
            Self::Resized => "resized",
            Self::Limited => "limited",
            Self::PoolClosed => "pool_closed",
            Self::Detached => "detached",
        }
    }
}

/// What the pool's lock guards, published for readers without it:
/// whether anyone waits, whether the pool is closed and whether the breaker
/// is open.
///
/// It is how a caller returning a connection without the pool's lock learns
/// that someone waits or that the pool closed, and how a caller learns it
/// may take an idle connection without the lock. It is written
/// (sequentially consistent) only when one of the three changes, so while
/// callers queue it stays put and its cache line is read by every core
/// without moving. The number of waiters is kept by the idle shards
/// (`idle.rs`, each core adding what its own thread changed), the slot
/// counts have their own word (`slots.rs`).
pub(crate) struct Gauges {
    flags: SyncU64,
}

const WAITING: u64 = 1;
const CLOSED: u64 = 1 << 1;
const BREAKER_OPEN: u64 = 1 << 2;

/// The flags at one moment (one load).
#[derive(Clone, Copy)]
pub(crate) struct Flags(u64);

impl Flags {
    /// Someone waits.
    #[inline]
    pub(crate) fn waiting(self) -> bool {
        self.0 & WAITING != 0
    }

    #[inline]
    pub(crate) fn closed(self) -> bool {
        self.0 & CLOSED != 0
    }

    #[inline]
    pub(crate) fn breaker_open(self) -> bool {
        self.0 & BREAKER_OPEN != 0
    }

    /// An idle connection may be taken (or returned to a shard) without the
    /// pool's lock: the pool is open and nobody waits (who would come
    /// first).
    #[inline]
    pub(crate) fn quiet(self) -> bool {
        self.0 & (WAITING | CLOSED) == 0
    }
}

impl Gauges {
    pub(crate) fn new() -> Self {
        Self {
            flags: SyncU64::new(0),
        }
    }

    /// Under the pool's lock (the only writer): publishes what changed.
    #[inline]
    pub(crate) fn publish(&self, waiting: bool, closed: bool, breaker_open: bool) {
        let flags = if waiting { WAITING } else { 0 }
            | if closed { CLOSED } else { 0 }
            | if breaker_open { BREAKER_OPEN } else { 0 };
        if self.flags.load(Relaxed) != flags {
            self.flags.store(flags, SeqCst);
        }
    }

    #[inline]
    pub(crate) fn flags(&self) -> Flags {
        Flags(self.flags.load(SeqCst))
    }

    /// Idle connections may owe something: to a waiter, to a closed pool,
    /// or to a pool that shrank.
    #[inline]
    pub(crate) fn needs_settling(&self, slots: SlotCounts) -> bool {
        !self.flags().quiet() || slots.open > slots.max
    }

    /// The status from its numbers.
    pub(crate) fn status_of(
        &self,
        pool: &Arc<str>,
        ceiling: u32,
        slots: SlotCounts,
        waiters: u32,
        idle: u32,
        breaker_open: bool,
    ) -> PoolStatus {
        let idle = idle.min(slots.open);
        PoolStatus {
            pool: pool.clone(),
            max_size: ceiling,
            limit: slots.max,
            size: slots.open,
            in_use: slots.open - idle,
            idle,
            opening: slots.opening,
            waiters,
            breaker_open,
        }
    }
}

/// The counters and histograms of one pool.
pub(crate) struct Stats {
    pub(crate) timeouts: AtomicU64,
    pub(crate) rejected_unavailable: AtomicU64,
    pub(crate) rejected_queue_full: AtomicU64,
    pub(crate) opened: AtomicU64,
    pub(crate) connect_errors_transient: AtomicU64,
    pub(crate) connect_errors_permanent: AtomicU64,
    pub(crate) connect_timeouts: AtomicU64,
    closed: [AtomicU64; CloseReason::ALL.len()],
    pub(crate) validation_failures: AtomicU64,
    pub(crate) reset_failures: AtomicU64,
    pub(crate) leaks_detected: AtomicU64,
    pub(crate) breaker_opened: AtomicU64,
    pub(crate) create_time: Histogram,
}

impl Stats {
    pub(crate) fn new() -> Self {
        Self {
            timeouts: AtomicU64::new(0),
            rejected_unavailable: AtomicU64::new(0),
            rejected_queue_full: AtomicU64::new(0),
            opened: AtomicU64::new(0),
            connect_errors_transient: AtomicU64::new(0),
            connect_errors_permanent: AtomicU64::new(0),
            connect_timeouts: AtomicU64::new(0),
            closed: Default::default(),
            validation_failures: AtomicU64::new(0),
            reset_failures: AtomicU64::new(0),
            leaks_detected: AtomicU64::new(0),
            breaker_opened: AtomicU64::new(0),
            create_time: Histogram::new(),
        }
    }

    pub(crate) fn count_closed(&self, reason: CloseReason, n: u64) {
        let i = CloseReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or_default();
        self.closed[i].fetch_add(n, Relaxed);
    }

    /// A snapshot, with the checkout figures the shards keep.
    pub(crate) fn snapshot(&self, hot: HotStats) -> StatsSnapshot {
        let read = |counter: &AtomicU64| counter.load(Relaxed);
        StatsSnapshot {
            acquired_direct: hot.acquired_direct,
            acquired_after_wait: hot.acquired_after_wait,
            timeouts: read(&self.timeouts),
            rejected_unavailable: read(&self.rejected_unavailable),
            rejected_queue_full: read(&self.rejected_queue_full),
            opened: read(&self.opened),
            connect_errors_transient: read(&self.connect_errors_transient),
            connect_errors_permanent: read(&self.connect_errors_permanent),
            connect_timeouts: read(&self.connect_timeouts),
            closed: CloseReason::ALL
                .iter()
                .zip(&self.closed)
                .map(|(reason, n)| (*reason, read(n)))
                .collect(),
            validation_failures: read(&self.validation_failures),
            reset_failures: read(&self.reset_failures),
            leaks_detected: read(&self.leaks_detected),
            breaker_opened: read(&self.breaker_opened),
            wait_time: hot.wait_time.with_zeros(hot.acquired_direct),
            use_time: hot.use_time,
            create_time: self.create_time.snapshot(0),
        }
    }
}

/// A copy of a pool's counters and histograms, from
/// [`Pool::stats`](crate::Pool::stats). Counters only grow.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # use tidewater_testkit::ScriptedManager;
/// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
/// drop(pool.get().await.unwrap());
/// drop(pool.get().await.unwrap());
/// let stats = pool.stats();
/// assert_eq!(stats.opened, 1);
/// assert_eq!(stats.acquired(), 2);
/// assert_eq!(stats.closed_total(), 0);
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Checkouts served at once by an idle connection.
    pub acquired_direct: u64,
    /// Checkouts that waited for a connection or validated one first.
    pub acquired_after_wait: u64,
    /// `get()` calls that ran out of time.
    pub timeouts: u64,
    /// `get()` calls refused at once because the breaker was open.
    pub rejected_unavailable: u64,
    /// `get()` calls refused at once because the waiter queue was full.
    pub rejected_queue_full: u64,
    /// Connections opened.
    pub opened: u64,
    /// Failed connection attempts classed transient (timeouts included).
    pub connect_errors_transient: u64,
    /// Failed connection attempts classed permanent.
    pub connect_errors_permanent: u64,
    /// Connection attempts that outlived `connect_timeout` (also counted as
    /// transient errors).
    pub connect_timeouts: u64,
    /// Connections closed, by reason, in the order of [`CloseReason::ALL`].
    pub closed: Vec<(CloseReason, u64)>,
    /// Checkout validations that failed.
    pub validation_failures: u64,
    /// Session resets that failed.
    pub reset_failures: u64,
    /// Connections reported as leak suspects.
    pub leaks_detected: u64,
    /// Times the circuit breaker opened.
    pub breaker_opened: u64,
    /// How long each successful `get()` took (zero for direct ones).
    pub wait_time: HistogramSnapshot,
    /// How long each connection was held by its caller.
    pub use_time: HistogramSnapshot,
    /// How long each successful connection attempt took.
    pub create_time: HistogramSnapshot,
}

impl StatsSnapshot {
    /// Successful checkouts.
    pub fn acquired(&self) -> u64 {
        self.acquired_direct + self.acquired_after_wait
    }

    /// Connections closed for one reason.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tidewater_testkit::ScriptedManager;
    /// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
    /// let conn = pool.get().await.unwrap();
    /// conn.set_broken();
    /// drop(conn);
    /// let stats = pool.stats();
    /// assert_eq!(stats.closed_by(tidewater::CloseReason::Broken), 1);
    /// assert_eq!((stats.closed_total(), stats.connect_errors()), (1, 0));
    /// # }
    /// ```
    pub fn closed_by(&self, reason: CloseReason) -> u64 {
        self.closed
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }

    /// Connections closed for any reason.
    pub fn closed_total(&self) -> u64 {
        self.closed.iter().map(|(_, n)| n).sum()
    }

    /// Failed connection attempts of either class.
    pub fn connect_errors(&self) -> u64 {
        self.connect_errors_transient + self.connect_errors_permanent
    }
}
