//! What `GET /api/pools` returns, and the per-pool history behind it.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tidewater::alerts::{Alert, ServerCapacity};
use tidewater::fleet::FleetStatus;
use tidewater::{LeakSuspect, PoolStatus, PoolView, SizingReport, StatsSnapshot};

/// Every monitored pool, as `GET /api/pools` returns it (see
/// [`Monitoring::report`](crate::Monitoring::report)).
///
/// ```json
/// {
///   "generated_at_unix_ms": 1795900000000,
///   "sample_interval_seconds": 1.0,
///   "history_capacity": 600,
///   "last_sample": 42,
///   "pools": [ { "name": "orders", "...": "see PoolReport" } ]
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PoolsReport {
    /// When the report was made, in milliseconds since the Unix epoch.
    pub generated_at_unix_ms: u64,
    /// Time between two history points.
    pub sample_interval_seconds: f64,
    /// Most history points kept per pool.
    pub history_capacity: usize,
    /// The number of the last sample taken (0 before the first): pass it as
    /// `?after=` to receive only newer points next time.
    pub last_sample: u64,
    /// One entry per pool, in the order they were registered.
    pub pools: Vec<PoolReport>,
}

/// One pool in a [`PoolsReport`]. Reading it never touches the database.
///
/// ```json
/// {
///   "name": "orders",
///   "status": { "pool": "orders", "max_size": 4, "limit": 4, "size": 2, "in_use": 1, "idle": 1,
///               "opening": 0, "waiters": 0, "breaker_open": false },
///   "sizing": { "mode": "fixed", "limit": 4, "floor": 4, "ceiling": 4, "reason": "starting", "...": "see docs/health.md" },
///   "alerts": [],
///   "leak_suspects": [ { "connection_id": 1, "caller": "src/orders.rs:6:21", "held_for_seconds": 7.0 } ],
///   "totals": { "acquired": 812, "timeouts": 0, "connect_errors": 0, "opened": 2, "closed": 0,
///               "rejected": 0, "leaks_detected": 1 },
///   "capacity": { "max_connections": 100, "available": 40 },
///   "fleet": { "fleet": "bank", "member": "a1", "state": "degraded", "reason": "connection refused",
///              "grant": 12, "budget": 33,
///              "members": [ { "member": "a1", "grant": 12, "held": 10, "demand": 14, "lease_age_seconds": 0.4 } ] },
///   "thresholds": { "acquire_timeout_seconds": 30.0, "expected_wait_p99_seconds": 1.0,
///                   "leak_detection_threshold_seconds": 60.0, "utilization": 0.8 },
///   "history": [ { "sample": 41, "unix_ms": 1795899999000, "in_use": 1, "...": "see HistoryPoint" } ]
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PoolReport {
    /// The pool's name.
    pub name: String,
    /// Its numbers now (the `PoolStatus` of `docs/health.md`).
    pub status: PoolStatus,
    /// Its limit on connections in use and why it is there (the
    /// `SizingReport` of `docs/health.md`).
    pub sizing: SizingReport,
    /// Alerts firing (the `Alert` of `docs/health.md`).
    pub alerts: Vec<Alert>,
    /// Connections held past the leak threshold, longest first, with the
    /// call site that took each.
    pub leak_suspects: Vec<LeakReport>,
    /// Counters since the pool started.
    pub totals: Totals,
    /// The database server's connections, as the backend last reported
    /// them; `null` when it never did.
    pub capacity: Option<ServerCapacity>,
    /// Its place in its fleet, as its coordinator last reported it (see
    /// [`tidewater::fleet`]); `null` in no fleet.
    pub fleet: Option<FleetStatus>,
    /// The configured bounds the dashboard draws against.
    pub thresholds: Thresholds,
    /// Samples, oldest first, one per sample interval, for about ten
    /// minutes.
    pub history: Vec<HistoryPoint>,
}

/// A connection held past the leak threshold, as the report carries it
/// (a [`LeakSuspect`] with its call site as text).
///
/// ```
/// let json = r#"{ "connection_id": 1, "caller": "src/orders.rs:6:21", "held_for_seconds": 7.0 }"#;
/// let leak: tidewater_axum::LeakReport = serde_json::from_str(json).unwrap();
/// assert_eq!(leak.caller, "src/orders.rs:6:21");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LeakReport {
    /// The id of the connection, as in the pool's logs.
    pub connection_id: u64,
    /// Where `get()` was called: `file:line:column`.
    pub caller: String,
    /// How long it has been held.
    pub held_for_seconds: f64,
}

impl From<&LeakSuspect> for LeakReport {
    fn from(suspect: &LeakSuspect) -> Self {
        Self {
            connection_id: suspect.connection_id,
            caller: suspect.caller.to_string(),
            held_for_seconds: suspect.held_for.as_secs_f64(),
        }
    }
}

/// A pool's counters since it started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Totals {
    /// Successful checkouts.
    pub acquired: u64,
    /// `get()` calls that ran out of `acquire_timeout`.
    pub timeouts: u64,
    /// Failed connection attempts, transient and permanent.
    pub connect_errors: u64,
    /// Connections opened.
    pub opened: u64,
    /// Connections closed, for any reason.
    pub closed: u64,
    /// `get()` calls refused at once (breaker open, queue full).
    pub rejected: u64,
    /// Connections reported as leak suspects.
    pub leaks_detected: u64,
}

impl Totals {
    fn of(stats: &StatsSnapshot) -> Self {
        Self {
            acquired: stats.acquired(),
            timeouts: stats.timeouts,
            connect_errors: stats.connect_errors(),
            opened: stats.opened,
            closed: stats.closed_total(),
            rejected: stats.rejected_unavailable + stats.rejected_queue_full,
            leaks_detected: stats.leaks_detected,
        }
    }
}

/// The configured bounds of a pool that its numbers are judged against.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Thresholds {
    /// Longest a `get()` waits.
    pub acquire_timeout_seconds: f64,
    /// The health check's bound on the recent p99 acquisition wait.
    pub expected_wait_p99_seconds: f64,
    /// Held longer than this, a connection is a leak suspect; `null` when
    /// leak detection is off.
    pub leak_detection_threshold_seconds: Option<f64>,
    /// Share of `max_size` in use that counts as high (0 to 1).
    pub utilization: f64,
}

impl Thresholds {
    fn of(view: &dyn PoolView) -> Self {
        let config = view.config();
        Self {
            acquire_timeout_seconds: config.acquire_timeout.as_secs_f64(),
            expected_wait_p99_seconds: config.expected_wait_p99.as_secs_f64(),
            leak_detection_threshold_seconds: config
                .leak_detection_threshold
                .map(|threshold| threshold.as_secs_f64()),
            utilization: config.alerts.utilization_threshold,
        }
    }
}

/// One sample of a pool's history.
///
/// ```json
/// { "sample": 41, "unix_ms": 1795899999000, "in_use": 1, "idle": 1, "max_size": 4,
///   "limit": 4, "waiters": 0, "opening": 0, "acquired": 37, "wait_p50_seconds": 0.0000005,
///   "wait_p99_seconds": 0.00025, "acquired_total": 812, "timeouts_total": 0,
///   "connect_errors_total": 0, "breaker_open": false }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HistoryPoint {
    /// The sample's number, counting from 1 for each [`Monitoring`](crate::Monitoring).
    pub sample: u64,
    /// When it was taken, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// Connections checked out.
    pub in_use: u32,
    /// Connections ready in the pool.
    pub idle: u32,
    /// Most connections allowed.
    pub max_size: u32,
    /// Connections callers may use at once: `max_size`, or the adaptive
    /// limit below it.
    pub limit: u32,
    /// Callers waiting for a connection.
    pub waiters: u32,
    /// Connection attempts in flight or backing off.
    pub opening: u32,
    /// Successful checkouts since the previous sample.
    pub acquired: u64,
    /// Median acquisition wait since the previous sample (0 without any).
    pub wait_p50_seconds: f64,
    /// 99th percentile acquisition wait since the previous sample.
    pub wait_p99_seconds: f64,
    /// Successful checkouts since the pool started.
    pub acquired_total: u64,
    /// `get()` timeouts since the pool started.
    pub timeouts_total: u64,
    /// Failed connection attempts since the pool started.
    pub connect_errors_total: u64,
    /// Whether the circuit breaker was open.
    pub breaker_open: bool,
}

/// A pool's ring buffer of samples, and the statistics of the last sample
/// (the next one's baseline).
pub(crate) struct History {
    points: VecDeque<HistoryPoint>,
    capacity: usize,
    baseline: StatsSnapshot,
}

impl History {
    pub(crate) fn new(capacity: usize, baseline: StatsSnapshot) -> Self {
        Self {
            points: VecDeque::with_capacity(capacity),
            capacity,
            baseline,
        }
    }

    /// Takes a sample of `view` numbered `sample` at `unix_ms`.
    pub(crate) fn record(&mut self, view: &dyn PoolView, sample: u64, unix_ms: u64) {
        let status = view.status();
        let stats = view.stats();
        let waits = stats.wait_time.since(&self.baseline.wait_time);
        let point = HistoryPoint {
            sample,
            unix_ms,
            in_use: status.in_use,
            idle: status.idle,
            max_size: status.max_size,
            limit: status.limit,
            waiters: status.waiters,
            opening: status.opening,
            acquired: stats.acquired().saturating_sub(self.baseline.acquired()),
            wait_p50_seconds: waits.quantile(0.5).as_secs_f64(),
            wait_p99_seconds: waits.quantile(0.99).as_secs_f64(),
            acquired_total: stats.acquired(),
            timeouts_total: stats.timeouts,
            connect_errors_total: stats.connect_errors(),
            breaker_open: status.breaker_open,
        };
        self.baseline = stats;
        if self.points.len() == self.capacity {
            self.points.pop_front();
        }
        self.points.push_back(point);
    }

    /// The points numbered above `after`, oldest first.
    pub(crate) fn after(&self, after: u64) -> Vec<HistoryPoint> {
        let newer = self.points.partition_point(|point| point.sample <= after);
        self.points.range(newer..).copied().collect()
    }
}

/// Reads one pool for the report: its live numbers (no database access) and
/// the history points after `after`.
pub(crate) fn pool_report(view: &dyn PoolView, history: Vec<HistoryPoint>) -> PoolReport {
    let stats = view.stats();
    PoolReport {
        name: view.name().to_owned(),
        status: view.status(),
        sizing: view.sizing(),
        alerts: view.alerts(),
        leak_suspects: view.leak_suspects().iter().map(LeakReport::from).collect(),
        totals: Totals::of(&stats),
        capacity: view.capacity(),
        fleet: view.fleet(),
        thresholds: Thresholds::of(view),
        history,
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms(time: SystemTime) -> u64 {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn the_ring_buffer_keeps_the_newest_points_oldest_first() {
        let (pool, _script) = tidewater_testkit::scripted_pool(Default::default());
        let mut history = History::new(3, pool.stats());
        for sample in 1..=5 {
            drop(pool.get().await.unwrap());
            history.record(&pool, sample, 1000 * sample);
        }
        let kept: Vec<u64> = history.after(0).iter().map(|point| point.sample).collect();
        assert_eq!(kept, [3, 4, 5]);
        let newer: Vec<u64> = history.after(4).iter().map(|point| point.sample).collect();
        assert_eq!(newer, [5]);
        assert!(history.after(5).is_empty());
        let last = history.after(4)[0];
        assert_eq!(
            (last.acquired, last.acquired_total, last.max_size),
            (1, 5, 50)
        );
    }
}
