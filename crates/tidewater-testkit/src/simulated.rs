//! A simulated database whose latency grows with concurrency past a knee,
//! for tests of the adaptive limit under tokio's paused clock.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

/// A database that serves `knee` queries at once at its `base` latency;
/// past the knee the queries share it, so each takes `base × concurrency /
/// knee` and throughput stays flat (the knee of a real server's
/// throughput curve, without the fall past it). Queries wait on tokio's
/// clock, so a paused clock runs a long simulation in moments.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use tidewater_testkit::SimulatedDatabase;
///
/// let db = SimulatedDatabase::new(Duration::from_millis(4), 10);
/// assert_eq!(db.latency_at(5), Duration::from_millis(4));
/// assert_eq!(db.latency_at(20), Duration::from_millis(8));
/// let start = tokio::time::Instant::now();
/// db.query().await;
/// assert_eq!(start.elapsed(), Duration::from_millis(4));
/// assert_eq!(db.queries(), 1);
/// # }
/// ```
#[derive(Debug)]
pub struct SimulatedDatabase {
    base: AtomicU64,
    knee: AtomicU32,
    active: AtomicU32,
    queries: AtomicU64,
}

impl SimulatedDatabase {
    /// A database with latency `base` up to `knee` concurrent queries.
    pub fn new(base: Duration, knee: u32) -> Self {
        Self {
            base: AtomicU64::new(nanos(base)),
            knee: AtomicU32::new(knee.max(1)),
            active: AtomicU32::new(0),
            queries: AtomicU64::new(0),
        }
    }

    /// Moves the knee (a slowdown that lowers how much the server can run
    /// at once, or its recovery).
    pub fn set_knee(&self, knee: u32) {
        self.knee.store(knee.max(1), SeqCst);
    }

    /// Changes the latency at every concurrency (a slower network).
    pub fn set_base(&self, base: Duration) {
        self.base.store(nanos(base), SeqCst);
    }

    /// The knee now.
    pub fn knee(&self) -> u32 {
        self.knee.load(SeqCst)
    }

    /// How long a query takes when `concurrency` run at once.
    pub fn latency_at(&self, concurrency: u32) -> Duration {
        let base = Duration::from_nanos(self.base.load(SeqCst));
        let knee = self.knee();
        if concurrency <= knee {
            base
        } else {
            base * concurrency / knee
        }
    }

    /// Runs one query: its latency is set by the queries running when it
    /// starts (itself included).
    pub async fn query(&self) {
        let concurrency = self.active.fetch_add(1, SeqCst) + 1;
        tokio::time::sleep(self.latency_at(concurrency)).await;
        self.active.fetch_sub(1, SeqCst);
        self.queries.fetch_add(1, SeqCst);
    }

    /// Queries completed so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(SeqCst)
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
