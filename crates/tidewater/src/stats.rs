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

use crate::rt::{AtomicBool, AtomicU64 as SyncU64};
use std::time::Duration;

use crate::histogram::{Histogram, HistogramSnapshot};

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
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PoolStatus {
    /// The pool's name.
    pub pool: Arc<str>,
    /// Most connections allowed.
    pub max_size: u32,
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
/// assert_eq!(CloseReason::ALL.len(), 10);
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
    /// The pool shrank below its size.
    Resized,
    /// The pool was closed.
    PoolClosed,
    /// Taken out of the pool for good by
    /// [`PooledConnection::detach`](crate::PooledConnection::detach).
    Detached,
}

impl CloseReason {
    /// Every reason, in a fixed order.
    pub const ALL: [CloseReason; 10] = [
        Self::Broken,
        Self::Panicked,
        Self::Interrupted,
        Self::ValidationFailed,
        Self::ResetFailed,
        Self::IdleTimeout,
        Self::MaxLifetime,
        Self::Resized,
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
            Self::PoolClosed => "pool_closed",
            Self::Detached => "detached",
        }
    }
}

/// The pool's live numbers, written under the pool's lock and read without
/// it. Size, waiters, attempts in flight and the size limit share one word,
/// so a reader always sees them from the same moment. The idle count lives
/// in the shards (`idle.rs`).
///
/// `packed` and `closed` are also how a caller returning a connection
/// without the pool's lock learns that someone waits, or that the pool
/// closed or shrank: they are written and read sequentially consistent.
pub(crate) struct Gauges {
    packed: SyncU64,
    closed: AtomicBool,
    breaker_open: AtomicBool,
}

/// The numbers packed into [`Gauges`], each at most 65 535.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) size: u32,
    pub(crate) waiters: u32,
    pub(crate) opening: u32,
    pub(crate) max_size: u32,
}

impl Counts {
    fn pack(self) -> u64 {
        let field = |v: u32| u64::from(v.min(0xFFFF));
        field(self.size)
            | field(self.waiters) << 16
            | field(self.opening) << 32
            | field(self.max_size) << 48
    }

    fn unpack(word: u64) -> Self {
        let field = |shift: u32| ((word >> shift) & 0xFFFF) as u32;
        Self {
            size: field(0),
            waiters: field(16),
            opening: field(32),
            max_size: field(48),
        }
    }
}

impl Gauges {
    pub(crate) fn new(counts: Counts) -> Self {
        Self {
            packed: SyncU64::new(counts.pack()),
            closed: AtomicBool::new(false),
            breaker_open: AtomicBool::new(false),
        }
    }

    pub(crate) fn publish(&self, counts: Counts, closed: bool) {
        self.packed.store(counts.pack(), SeqCst);
        self.closed.store(closed, SeqCst);
    }

    pub(crate) fn counts(&self) -> Counts {
        Counts::unpack(self.packed.load(SeqCst))
    }

    pub(crate) fn closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    /// An idle connection may be taken without the pool's lock: the pool
    /// is open and nobody waits (who would come first).
    pub(crate) fn may_take_idle(&self) -> bool {
        self.counts().waiters == 0 && !self.closed()
    }

    /// Idle connections may owe something: to a waiter, to a closed pool,
    /// or to a pool that shrank.
    pub(crate) fn needs_settling(&self) -> bool {
        let counts = self.counts();
        counts.waiters > 0 || counts.size > counts.max_size || self.closed()
    }

    pub(crate) fn set_breaker_open(&self, open: bool) {
        self.breaker_open.store(open, Relaxed);
    }

    /// The status now.
    pub(crate) fn status(&self, pool: &Arc<str>, idle: u32) -> PoolStatus {
        self.status_of(pool, self.counts(), idle, self.breaker_open.load(Relaxed))
    }

    /// The status from numbers read elsewhere (under the pool's lock).
    pub(crate) fn status_of(
        &self,
        pool: &Arc<str>,
        counts: Counts,
        idle: u32,
        breaker_open: bool,
    ) -> PoolStatus {
        let idle = idle.min(counts.size);
        PoolStatus {
            pool: pool.clone(),
            max_size: counts.max_size,
            size: counts.size,
            in_use: counts.size - idle,
            idle,
            opening: counts.opening,
            waiters: counts.waiters,
            breaker_open,
        }
    }
}

/// The counters and histograms of one pool.
pub(crate) struct Stats {
    pub(crate) acquired_after_wait: AtomicU64,
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
    pub(crate) wait_time: Histogram,
    pub(crate) create_time: Histogram,
}

impl Stats {
    pub(crate) fn new() -> Self {
        Self {
            acquired_after_wait: AtomicU64::new(0),
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
            wait_time: Histogram::new(),
            create_time: Histogram::new(),
        }
    }

    /// Counts a checkout that waited for a connection or validated one.
    pub(crate) fn record_wait(&self, waited: Duration) {
        self.wait_time.record(waited);
        self.acquired_after_wait.fetch_add(1, Relaxed);
    }

    pub(crate) fn count_closed(&self, reason: CloseReason, n: u64) {
        let i = CloseReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or_default();
        self.closed[i].fetch_add(n, Relaxed);
    }

    /// A snapshot, with the two hot-path figures the shards keep.
    pub(crate) fn snapshot(
        &self,
        acquired_direct: u64,
        use_time: HistogramSnapshot,
    ) -> StatsSnapshot {
        let read = |counter: &AtomicU64| counter.load(Relaxed);
        StatsSnapshot {
            acquired_direct,
            acquired_after_wait: read(&self.acquired_after_wait),
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
            wait_time: self.wait_time.snapshot(acquired_direct),
            use_time,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_pack_and_unpack() {
        let counts = Counts {
            size: 50,
            waiters: 65_535,
            opening: 2,
            max_size: 10_000,
        };
        assert_eq!(Counts::unpack(counts.pack()), counts);
        let saturated = Counts {
            waiters: 100_000,
            ..counts
        };
        assert_eq!(Counts::unpack(saturated.pack()).waiters, 65_535);
    }
}
