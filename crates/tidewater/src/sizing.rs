//! The adaptive limit: how many connections callers may use at once, found
//! from the database's own latency rather than guessed.
//!
//! With `sizing.mode = "adaptive"` the pool keeps a limit between
//! `sizing.floor` and `max_size` (the ceiling) and moves it every
//! `sizing.interval`, from two numbers the pool already measures for free:
//! the mean time a connection is held per checkout (its *use time*, from
//! the use-time histogram's sum and count) and the mean number of
//! connections in use (that sum over the interval: Little's law). Nothing
//! is added to `get()` or the return path.
//!
//! The rule, one interval at a time (the design and its sources are in
//! `docs/design.md`):
//! - **Baseline**: the lowest mean use time seen, the database's latency
//!   when nothing queues inside it.
//! - **Past the knee** (mean use time above the baseline by more than
//!   `sizing.tolerance`): the limit falls toward the concurrency the
//!   database served at baseline latency, `in use × baseline / use time`
//!   (plus half the tolerance), by at most twice `sizing.step` of it.
//! - **Headroom** (within half the tolerance, and callers queued for the
//!   limit): the limit rises by `sizing.step` of itself (at least one
//!   connection); while it has never fallen, it doubles (slow start).
//! - **The latency did not follow**: when a fall did not shorten the use
//!   time, the slowness is not the pool's concurrency (a slower network, a
//!   bigger table): the use time becomes the new baseline, and the limit
//!   stops falling.
//! - **Probe**: after 20 intervals without a fall while queued, the limit
//!   dips by twice the step, so that the baseline is measured afresh.
//!
//! The limit is enforced as the pool's size: lowering it closes
//! connections as they come back (reason `limited`), raising it lets the
//! pool open more. `resize()` moves the ceiling; `min_idle` is kept within
//! the limit; while the breaker is open no use times arrive and the limit
//! holds.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

use crate::config::{SizingConfig, SizingMode};
use crate::histogram::HistogramSnapshot;
use crate::manager::Manager;
use crate::pool::Pool;
use crate::rt::{self, Instant};

/// Intervals without a fall, while callers queue, before a probe.
const PROBE_AFTER: u32 = 20;
/// Fewest returns an interval needs before the limit moves on it.
const MIN_SAMPLES: u64 = 20;

/// Why the adaptive limit last moved (or held).
///
/// ```
/// assert_eq!(tidewater::LimitReason::LatencyRising.as_str(), "latency_rising");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitReason {
    /// Fixed sizing, or no interval with enough returns yet.
    Starting,
    /// Use time within the tolerance and callers queued: it rose.
    Headroom,
    /// Use time above the baseline by more than the tolerance: it fell.
    LatencyRising,
    /// Use time near the knee: it held.
    AtKnee,
    /// Nobody queued for the limit: it held.
    NotReached,
    /// The last fall did not shorten the use time: it held, and the
    /// baseline was reset to the use time now.
    Rebaselined,
    /// A periodic dip to measure the baseline afresh.
    Probe,
    /// At the ceiling (`max_size`) or the floor.
    Bounded,
}

impl LimitReason {
    /// The reason as a metric label or JSON value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Headroom => "headroom",
            Self::LatencyRising => "latency_rising",
            Self::AtKnee => "at_knee",
            Self::NotReached => "not_reached",
            Self::Rebaselined => "rebaselined",
            Self::Probe => "probe",
            Self::Bounded => "bounded",
        }
    }
}

/// The pool's sizing now: [`Pool::sizing`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # use tidewater_testkit::ScriptedManager;
/// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
/// let sizing = pool.sizing();
/// assert_eq!((sizing.mode, sizing.limit, sizing.ceiling), (tidewater::SizingMode::Fixed, 50, 50));
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SizingReport {
    /// Fixed or adaptive.
    pub mode: SizingMode,
    /// Connections callers may use at once now.
    pub limit: u32,
    /// The floor (adaptive), as configured.
    pub floor: u32,
    /// The ceiling: `max_size`, or the last `resize()`.
    pub ceiling: u32,
    /// The baseline mean use time: the database's latency when nothing
    /// queues inside it.
    #[serde(rename = "baseline_use_seconds", serialize_with = "seconds")]
    pub baseline_use: Option<Duration>,
    /// The mean use time in the last interval the limit was decided on.
    #[serde(rename = "recent_use_seconds", serialize_with = "seconds")]
    pub recent_use: Option<Duration>,
    /// The mean number of connections in use over that interval.
    pub recent_in_use: f64,
    /// Why the limit last moved or held.
    pub reason: LimitReason,
}

/// A duration as seconds in JSON (`null` when there is none yet).
fn seconds<S: serde::Serializer>(
    value: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    value.map(|value| value.as_secs_f64()).serialize(serializer)
}

/// One interval's measurements.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    /// Returns in the interval.
    pub(crate) uses: u64,
    /// Their mean use time, in seconds.
    pub(crate) mean_use: f64,
    /// Mean connections in use over the interval.
    pub(crate) in_use: f64,
    /// Callers queued for the limit in the interval.
    pub(crate) queued: bool,
}

/// The rule: a pure state machine, fed one [`Sample`] per interval.
#[derive(Clone, Debug)]
pub(crate) struct Controller {
    floor: u32,
    ceiling: u32,
    step: f64,
    tolerance: f64,
    limit: u32,
    /// Seconds.
    baseline: Option<f64>,
    slow_start: bool,
    /// The concurrency and use time just before the last fall.
    fell_from: Option<(f64, f64)>,
    since_fall: u32,
    last: Option<Sample>,
    reason: LimitReason,
}

impl Controller {
    pub(crate) fn new(config: &SizingConfig, ceiling: u32) -> Self {
        let floor = config.floor.min(ceiling);
        Self {
            floor: config.floor,
            ceiling,
            step: config.step,
            tolerance: config.tolerance,
            limit: floor,
            baseline: None,
            slow_start: true,
            fell_from: None,
            since_fall: 0,
            last: None,
            reason: LimitReason::Starting,
        }
    }

    pub(crate) fn limit(&self) -> u32 {
        self.limit
    }

    fn floor(&self) -> u32 {
        self.floor.min(self.ceiling)
    }

    /// A new ceiling (`resize()`): the limit stays within it.
    pub(crate) fn set_ceiling(&mut self, ceiling: u32) {
        self.ceiling = ceiling;
        self.limit = self.limit.clamp(self.floor(), ceiling);
    }

    /// Decides the limit on one interval; `false` when the interval had too
    /// few returns to decide on (the caller keeps measuring).
    pub(crate) fn observe(&mut self, sample: Sample) -> bool {
        if sample.uses < MIN_SAMPLES || sample.mean_use <= 0.0 {
            return false;
        }
        self.last = Some(sample);
        let used = sample.mean_use;
        if let Some((in_use_before, use_before)) = self.fell_from.take() {
            let shrink = 1.0 - sample.in_use / in_use_before;
            if shrink > 0.05 && used > use_before * (1.0 - shrink / 2.0) {
                self.baseline = Some(used);
                self.since_fall = 0;
                self.reason = LimitReason::Rebaselined;
                return true;
            }
        }
        let baseline = self.baseline.map_or(used, |baseline| baseline.min(used));
        self.baseline = Some(baseline);
        let ratio = used / baseline;
        let limit = f64::from(self.limit);
        let (target, reason) = if ratio > 1.0 + self.tolerance {
            let knee = sample.in_use * baseline / used * (1.0 + self.tolerance / 2.0);
            let target = knee.min(limit).max(limit - self.fall_bound());
            (target, LimitReason::LatencyRising)
        } else if !sample.queued {
            (limit, LimitReason::NotReached)
        } else if self.since_fall >= PROBE_AFTER && self.limit < self.ceiling {
            (limit - self.fall_bound(), LimitReason::Probe)
        } else if ratio <= 1.0 + self.tolerance / 2.0 {
            let rise = if self.slow_start {
                limit
            } else {
                (limit * self.step).max(1.0)
            };
            (limit + rise, LimitReason::Headroom)
        } else {
            (limit, LimitReason::AtKnee)
        };
        let next = (target.round() as u32).clamp(self.floor(), self.ceiling);
        self.reason = if next == self.limit && target.round() as u32 != self.limit {
            LimitReason::Bounded
        } else {
            reason
        };
        if reason != LimitReason::Headroom {
            // Slow start ends at the first sign of the knee.
            self.slow_start &= reason == LimitReason::NotReached;
        }
        if next < self.limit {
            self.fell_from = Some((sample.in_use, used));
            self.since_fall = 0;
        } else {
            self.since_fall = self.since_fall.saturating_add(1);
        }
        self.limit = next;
        true
    }

    /// The most one interval may lower the limit.
    fn fall_bound(&self) -> f64 {
        (f64::from(self.limit) * 2.0 * self.step).max(1.0)
    }

    pub(crate) fn report(&self, mode: SizingMode) -> SizingReport {
        let seconds = |s: f64| Duration::from_secs_f64(s);
        SizingReport {
            mode,
            limit: self.limit,
            floor: self.floor,
            ceiling: self.ceiling,
            baseline_use: self.baseline.map(seconds),
            recent_use: self.last.map(|sample| seconds(sample.mean_use)),
            recent_in_use: self.last.map_or(0.0, |sample| sample.in_use),
            reason: self.reason,
        }
    }
}

/// The pool's sizing: its ceiling, and the controller when adaptive.
pub(crate) struct Sizing {
    mode: SizingMode,
    /// `max_size`, or the last `resize()`; readable without a lock.
    ceiling: AtomicU32,
    /// Taken before the pool's lock, never under it.
    controller: std::sync::Mutex<Controller>,
}

impl Sizing {
    pub(crate) fn new(config: &SizingConfig, ceiling: u32) -> Self {
        Self {
            mode: config.mode,
            ceiling: AtomicU32::new(ceiling),
            controller: std::sync::Mutex::new(Controller::new(config, ceiling)),
        }
    }

    /// The first limit: the floor when adaptive, else the ceiling.
    pub(crate) fn initial_limit(&self) -> u32 {
        match self.mode {
            SizingMode::Fixed => self.ceiling(),
            SizingMode::Adaptive => self.controller().limit(),
        }
    }

    pub(crate) fn ceiling(&self) -> u32 {
        self.ceiling.load(Relaxed)
    }

    fn controller(&self) -> std::sync::MutexGuard<'_, Controller> {
        self.controller
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<M: Manager> Pool<M> {
    /// The pool's sizing now: the limit on connections in use, its ceiling
    /// and, when adaptive, the use times it follows and why it last moved.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tidewater_testkit::ScriptedManager;
    /// use tidewater::{PoolConfig, SizingConfig, SizingMode};
    /// let config = PoolConfig {
    ///     sizing: SizingConfig { mode: SizingMode::Adaptive, floor: 4, ..Default::default() },
    ///     ..Default::default()
    /// };
    /// let pool = tidewater::Pool::new(ScriptedManager::new(), config).unwrap();
    /// let sizing = pool.sizing();
    /// assert_eq!((sizing.limit, sizing.ceiling), (4, 50)); // starts at the floor
    /// assert_eq!(pool.status().limit, 4);
    /// # }
    /// ```
    pub fn sizing(&self) -> SizingReport {
        let sizing = &self.shared.sizing;
        match sizing.mode {
            SizingMode::Adaptive => sizing.controller().report(SizingMode::Adaptive),
            SizingMode::Fixed => {
                let ceiling = sizing.ceiling();
                SizingReport {
                    mode: SizingMode::Fixed,
                    limit: ceiling,
                    floor: ceiling,
                    ceiling,
                    baseline_use: None,
                    recent_use: None,
                    recent_in_use: 0.0,
                    reason: LimitReason::Starting,
                }
            }
        }
    }

    /// Sets the ceiling (`resize()`) and applies the limit within it.
    pub(crate) fn set_ceiling(&self, ceiling: u32) {
        let sizing = &self.shared.sizing;
        let mut controller = sizing.controller();
        sizing.ceiling.store(ceiling, Relaxed);
        controller.set_ceiling(ceiling);
        let limit = match sizing.mode {
            SizingMode::Fixed => ceiling,
            SizingMode::Adaptive => controller.limit(),
        };
        self.apply_limit(limit);
    }
}

/// Starts the task that moves the adaptive limit; it ends with the pool.
pub(crate) fn start<M: Manager>(pool: &Pool<M>) {
    if pool.shared.sizing.mode != SizingMode::Adaptive {
        return;
    }
    let weak = pool.downgrade();
    let interval = pool.shared.config.sizing.interval;
    let mut since = Measured::now(pool);
    rt::spawn(async move {
        loop {
            rt::sleep_until(Instant::now() + interval).await;
            let Some(shared) = weak.upgrade() else { return };
            let pool = Pool::from_shared(shared);
            if pool.lock().closed {
                return;
            }
            let now = Measured::now(&pool);
            let mut sample = now.since(&since);
            // Queued for the limit, not for a connection being opened.
            sample.queued &= pool.shared.slots.counts().room() == 0;
            let mut controller = pool.shared.sizing.controller();
            if controller.observe(sample) {
                pool.apply_limit(controller.limit());
                since = now;
            }
        }
    });
}

/// What the limit is decided from, read at one moment.
struct Measured {
    at: Instant,
    use_time: HistogramSnapshot,
    queued: u64,
}

impl Measured {
    fn now<M: Manager>(pool: &Pool<M>) -> Self {
        let hot = pool.shared.idle.hot_stats();
        Self {
            at: Instant::now(),
            use_time: hot.use_time,
            queued: hot.acquired_after_wait,
        }
    }

    /// The sample from `earlier` to this moment.
    fn since(&self, earlier: &Measured) -> Sample {
        let uses = self.use_time.count() - earlier.use_time.count();
        let held = (self.use_time.sum() - earlier.use_time.sum()).as_secs_f64();
        let elapsed = self.at.duration_since(earlier.at).as_secs_f64();
        Sample {
            uses,
            mean_use: if uses == 0 { 0.0 } else { held / uses as f64 },
            in_use: if elapsed > 0.0 { held / elapsed } else { 0.0 },
            queued: self.queued > earlier.queued,
        }
    }
}

#[cfg(all(test, not(tidewater_shuttle)))]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sample(mean_use: f64, in_use: f64, queued: bool) -> Sample {
        Sample {
            uses: 100,
            mean_use,
            in_use,
            queued,
        }
    }

    #[test]
    fn too_few_returns_decide_nothing() {
        let mut controller = Controller::new(&SizingConfig::default(), 50);
        let few = Sample {
            uses: MIN_SAMPLES - 1,
            ..sample(0.005, 2.0, true)
        };
        assert!(!controller.observe(few));
        assert_eq!(controller.reason, LimitReason::Starting);
    }

    #[test]
    fn a_fall_the_use_time_does_not_follow_moves_the_baseline() {
        let mut controller = Controller::new(&SizingConfig::default(), 50);
        controller.observe(sample(0.005, 2.0, true));
        controller.observe(sample(0.015, 4.0, true)); // three times slower
        assert_eq!(controller.reason, LimitReason::LatencyRising);
        assert_eq!(controller.limit(), 3);
        controller.observe(sample(0.015, 3.0, true)); // no faster with fewer
        assert_eq!(controller.reason, LimitReason::Rebaselined);
        assert_eq!(
            controller.report(SizingMode::Adaptive).baseline_use,
            Some(Duration::from_millis(15))
        );
    }

    proptest! {
        /// Whatever the database does, the limit stays within the floor and
        /// the ceiling, and no interval moves it by more than its bound.
        #[test]
        fn the_limit_stays_within_its_bounds(
            floor in 1u32..20,
            ceiling in 1u32..300,
            steps in proptest::collection::vec(
                (0.0001f64..1.0, 0.0f64..400.0, any::<bool>(), proptest::option::of(1u32..300)),
                1..200,
            ),
        ) {
            let config = SizingConfig { floor, ..SizingConfig::default() };
            let mut controller = Controller::new(&config, ceiling);
            for (mean_use, in_use, queued, resize) in steps {
                if let Some(ceiling) = resize {
                    controller.set_ceiling(ceiling);
                }
                let before = controller.limit();
                controller.observe(sample(mean_use, in_use, queued));
                let limit = controller.limit();
                prop_assert!(limit <= controller.ceiling);
                prop_assert!(limit >= floor.min(controller.ceiling));
                let most_rise = before.max((f64::from(before) * config.step).ceil() as u32);
                prop_assert!(limit <= before + most_rise, "{before} -> {limit}");
                let most_fall = ((f64::from(before) * 2.0 * config.step).ceil() as u32).max(1);
                prop_assert!(limit + most_fall >= before, "{before} -> {limit}");
            }
        }
    }
}
