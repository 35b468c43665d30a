//! A lock-free latency histogram: one atomic add per sample.
//!
//! Buckets are log-linear over nanoseconds: every power of two is split into
//! eight equal buckets, so any value is known to within 12.5%, from 1 ns to
//! centuries, in 496 counters.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Number of buckets: exact values below `SUB`, then `SUB` per power of two.
pub(crate) const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

#[inline]
fn index(nanos: u64) -> usize {
    if nanos < SUB as u64 {
        return nanos as usize;
    }
    let shift = 63 - nanos.leading_zeros() - SUB_BITS;
    let sub = (nanos >> shift) as usize - SUB;
    (shift as usize + 1) * SUB + sub
}

/// The smallest value that falls into bucket `i`.
fn lower_bound(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let shift = (i / SUB - 1) as u32;
    ((SUB + i % SUB) as u64) << shift
}

/// The largest value that falls into bucket `i`.
fn upper_bound(i: usize) -> u64 {
    if i + 1 >= BUCKETS {
        u64::MAX
    } else {
        lower_bound(i + 1) - 1
    }
}

/// Records durations; read with [`Histogram::snapshot`].
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub(crate) fn record(&self, value: Duration) {
        self.record_nanos(u64::try_from(value.as_nanos()).unwrap_or(u64::MAX));
    }

    #[inline]
    pub(crate) fn record_nanos(&self, nanos: u64) {
        self.buckets[index(nanos)].fetch_add(1, Relaxed);
        if nanos != 0 {
            self.sum_nanos.fetch_add(nanos, Relaxed);
        }
    }

    /// Reads every bucket. `extra_zeros` adds samples of zero that were
    /// counted elsewhere (checkouts that never waited).
    pub(crate) fn snapshot(&self, extra_zeros: u64) -> HistogramSnapshot {
        let mut buckets: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        buckets[0] += extra_zeros;
        HistogramSnapshot {
            buckets,
            sum_nanos: self.sum_nanos.load(Relaxed),
        }
    }
}

/// A copy of a latency histogram at one moment.
///
/// Two snapshots subtract ([`HistogramSnapshot::since`]) to give the samples
/// of the time between them, which is how a recent-window p99 is computed.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # use tidewater_testkit::ScriptedManager;
/// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
/// drop(pool.get().await.unwrap());
/// let use_time = pool.stats().use_time;
/// assert_eq!(use_time.count(), 1);
/// assert!(use_time.quantile(0.99) < std::time::Duration::from_secs(1));
/// # }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    buckets: Vec<u64>,
    sum_nanos: u64,
}

impl HistogramSnapshot {
    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Sum of all samples.
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_nanos)
    }

    /// The value below which a fraction `q` (0 to 1) of samples fall: the
    /// upper end of the bucket that holds it, so it never understates.
    /// Zero when there are no samples.
    pub fn quantile(&self, q: f64) -> Duration {
        let count = self.count();
        if count == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Duration::from_nanos(upper_bound(i));
            }
        }
        Duration::from_nanos(u64::MAX)
    }

    /// The largest sample, to bucket precision.
    pub fn max(&self) -> Duration {
        match self.buckets.iter().rposition(|&n| n > 0) {
            Some(i) => Duration::from_nanos(upper_bound(i)),
            None => Duration::ZERO,
        }
    }

    /// Samples no larger than `bound`: the cumulative count of a Prometheus
    /// bucket `le = bound`. Exact when `bound` is a bucket edge; otherwise a
    /// bucket that straddles it counts as above it.
    pub fn count_at_most(&self, bound: Duration) -> u64 {
        let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        self.buckets
            .iter()
            .enumerate()
            .take_while(|(i, _)| upper_bound(*i) <= nanos)
            .map(|(_, n)| n)
            .sum()
    }

    /// With `zeros` more samples of zero (checkouts that never waited, which
    /// are only counted).
    pub(crate) fn with_zeros(mut self, zeros: u64) -> HistogramSnapshot {
        if self.buckets.is_empty() {
            self.buckets = vec![0; BUCKETS];
        }
        self.buckets[0] += zeros;
        self
    }

    /// The samples of both snapshots together.
    pub(crate) fn merge(mut self, other: &HistogramSnapshot) -> HistogramSnapshot {
        if self.buckets.is_empty() {
            return other.clone();
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
        self.sum_nanos += other.sum_nanos;
        self
    }

    /// The samples recorded after `earlier` was taken.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tidewater_testkit::ScriptedManager;
    /// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
    /// drop(pool.get().await.unwrap());
    /// let before = pool.stats().use_time;
    /// drop(pool.get().await.unwrap());
    /// let window = pool.stats().use_time.since(&before);
    /// assert_eq!(window.count(), 1);
    /// assert!(window.max() >= window.quantile(0.5));
    /// assert_eq!(window.count_at_most(std::time::Duration::from_secs(1)), 1);
    /// # }
    /// ```
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        let mut buckets = self.buckets.clone();
        for (now, before) in buckets.iter_mut().zip(&earlier.buckets) {
            *now = now.saturating_sub(*before);
        }
        HistogramSnapshot {
            buckets,
            sum_nanos: self.sum_nanos.saturating_sub(earlier.sum_nanos),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        for i in 0..BUCKETS {
            assert_eq!(index(lower_bound(i)), i, "lower bound of bucket {i}");
            assert_eq!(index(upper_bound(i)), i, "upper bound of bucket {i}");
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn precision_is_one_eighth() {
        for value in [9_u64, 1_000, 123_456, 10_000_000_000] {
            let i = index(value);
            let width = upper_bound(i) - lower_bound(i) + 1;
            assert!(
                width * 8 <= lower_bound(i).max(8),
                "bucket {i} too wide for {value}"
            );
        }
    }

    #[test]
    fn quantiles_and_windows() {
        let histogram = Histogram::new();
        for ms in 1..=100 {
            histogram.record(Duration::from_millis(ms));
        }
        let first = histogram.snapshot(0);
        assert_eq!(first.count(), 100);
        assert_eq!(first.sum(), Duration::from_millis(5050));
        let p50 = first.quantile(0.5);
        assert!(
            p50 >= Duration::from_millis(50) && p50 < Duration::from_millis(57),
            "{p50:?}"
        );
        let p99 = first.quantile(0.99);
        assert!(
            p99 >= Duration::from_millis(99) && p99 < Duration::from_millis(112),
            "{p99:?}"
        );
        histogram.record(Duration::from_secs(5));
        let window = histogram.snapshot(0).since(&first);
        assert_eq!(window.count(), 1);
        assert!(window.quantile(0.5) >= Duration::from_secs(5));
        assert_eq!(window.count_at_most(Duration::from_secs(4)), 0);
        assert_eq!(histogram.snapshot(3).count_at_most(Duration::ZERO), 3);
    }
}
