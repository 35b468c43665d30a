//! The adaptive limit: how many connections callers may use at once, found
//! from what the database delivers rather than guessed.
//!
//! With `sizing.mode = "adaptive"` the pool keeps a limit between
//! `sizing.floor` and `max_size` (the ceiling) and moves it every
//! `sizing.interval`, from what the pool already measures for free: the
//! returns in the interval and the time their connections were held (the
//! use-time histogram's count and sum), and the time callers spent queued
//! (the waiter queue's length integrated over time: one multiply-add when
//! a caller joins or leaves the queue). The returns per second are the
//! throughput `X`; the mean held time over the interval is the mean in use
//! `N`; with the mean queued `Q`, `T = (N + Q) / X` is the time one
//! checkout costs its caller, waiting and using (Little's law). Nothing is
//! added to a `get()` that finds a connection, and no query is sent.
//!
//! The rule (the design and its sources are in `docs/design.md`): the limit
//! climbs while an added connection still pays, and falls when it does not.
//! The measure is half the *elasticity* of the callers' power `X / T`
//! (Kleinrock) to the limit, `e = ½ Δln(X / T) / Δln limit` between two
//! intervals at different limits, smoothed over the recent ones (for
//! callers that loop, `X / T` is `X²` over their number, so `e` is the
//! throughput's elasticity). Below the database's
//! knee a higher limit buys throughput (callers that loop) or saves the
//! time callers queue in the pool (callers that arrive on their own
//! schedule): `e` is positive. Past it, more connections buy only more
//! waiting inside the database: `e` is 0 or less.
//! - **Slow start**: from the floor, the limit doubles while each doubling
//!   pays (`e ≥ sizing.min_elasticity`); the first that does not sends it
//!   back to where that doubling started; an interval in which nobody
//!   queued for the limit ends it too. Slow start decides five times
//!   per interval, so that callers arriving all at once do not queue
//!   behind the floor for seconds.
//! - **Headroom**: `e ≥ sizing.min_elasticity` (0.1): it rises by
//!   `sizing.step` of itself (at least one connection).
//! - **Past the knee**: `e < sizing.min_elasticity`: it falls by the same.
//! - **Not reached**: nobody queued for the limit in the interval: it does
//!   not rise (no evidence that more would help), and that interval is not
//!   compared; a limit above `N + 3√N` (square-root staffing for the mean
//!   in use `N`) falls by one step toward it (a limit nobody reaches lets a
//!   stalled database's backlog in all at once).
//! - After a move, the next interval starts 100 ms later (a fifth of the
//!   interval): connections just opened start cold, those closing are
//!   still coming back.
//!
//! The limit thus keeps moving by one step around the point where an added
//! connection stops paying: the movement is what measures the elasticity.
//!
//! ```
//! let config: tidewater::PoolConfig = toml::from_str(r#"
//!     max_size = 200            # the ceiling
//!     [sizing]
//!     mode = "adaptive"
//!     floor = 4
//! "#).unwrap();
//! assert_eq!(config.sizing.min_elasticity, 0.1);
//! ```
//!
//! The limit is enforced as the pool's size: lowering it closes
//! connections as they come back (reason `limited`), raising it lets the
//! pool open more. `resize()` moves the ceiling; `min_idle` is kept within
//! the limit; while the breaker is open no returns arrive and the limit
//! holds.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Tick;
use crate::config::{SizingConfig, SizingMode};
use crate::histogram::HistogramSnapshot;
use crate::manager::Manager;
use crate::pool::Pool;
use crate::rt::{self, Instant};

/// Slow start decides this many times per `sizing.interval`: callers that
/// all arrive at once (a service starting under load) queue behind the
/// floor for as long as slow start takes.
const SLOW_START_PACE: u32 = 5;
/// Fewest returns an interval needs before the limit moves on it.
const MIN_SAMPLES: u64 = 20;
/// Weight of the newest comparison in the smoothed elasticity.
const SMOOTHING: f64 = 0.5;
/// Smallest change of the limit between two intervals worth comparing.
const MIN_CHANGE: f64 = 0.04;
/// One comparison's elasticity is clamped to this range, so that a jolt
/// unrelated to the limit (a sudden slowdown) moves the estimate by
/// at most one comparison's worth.
const CLAMP: (f64, f64) = (-1.0, 1.5);

/// Why the adaptive limit last moved (or held).
///
/// ```
/// assert_eq!(tidewater::LimitReason::PastKnee.as_str(), "past_knee");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitReason {
    /// Fixed sizing, or no interval with enough returns yet.
    Starting,
    /// Slow start: the last doubling paid.
    SlowStart,
    /// An added connection still buys throughput or saves waiting: it rose.
    Headroom,
    /// An added connection buys too little: it fell.
    PastKnee,
    /// Nobody queued for the limit: it held, or fell a step toward the
    /// square-root staffing level of the mean in use (`N + 3√N`).
    NotReached,
    /// At the ceiling (`max_size`) or the floor.
    Bounded,
}

impl LimitReason {
    /// The reason as a metric label or JSON value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::SlowStart => "slow_start",
            Self::Headroom => "headroom",
            Self::PastKnee => "past_knee",
            Self::NotReached => "not_reached",
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// The lowest mean use time seen: the database's latency when little
    /// queues inside it (for reference; the rule compares intervals).
    #[serde(rename = "baseline_use_seconds", with = "seconds")]
    pub baseline_use: Option<Duration>,
    /// The mean use time in the last interval the limit was decided on.
    #[serde(rename = "recent_use_seconds", with = "seconds")]
    pub recent_use: Option<Duration>,
    /// The mean number of connections in use over that interval.
    pub recent_in_use: f64,
    /// The mean number of callers queued in the pool over that interval.
    pub recent_waiting: f64,
    /// Returns per second in that interval.
    pub recent_throughput: f64,
    /// The smoothed elasticity of the callers' power (throughput over the
    /// wait plus use time of a checkout) to the limit: what an added
    /// connection brings, relative to its share of connections (positive
    /// below the knee, 0 or less past it).
    pub elasticity: Option<f64>,
    /// Why the limit last moved or held.
    pub reason: LimitReason,
}

/// A duration as seconds in JSON (`null` when there is none yet).
mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        value.map(|value| value.as_secs_f64()).serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        let seconds = Option::<f64>::deserialize(deserializer)?;
        seconds
            .map(|seconds| Duration::try_from_secs_f64(seconds).map_err(serde::de::Error::custom))
            .transpose()
    }
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
    /// Mean callers queued in the pool over the interval.
    pub(crate) waiting: f64,
    /// Callers queued for the limit in the interval.
    pub(crate) queued: bool,
    /// The limit in force during the interval (set by the controller).
    pub(crate) limit: u32,
}

impl Sample {
    /// Returns per second: `N / R` (Little's law).
    fn throughput(self) -> f64 {
        self.in_use / self.mean_use
    }

    /// The callers' power: throughput over the time a checkout costs its
    /// caller, waiting and using, `T = (N + Q) / X` (Little's law over the
    /// pool, exact in every interval where a wait measured at its end would
    /// lag). Callers that loop gain throughput; callers that arrive on
    /// their own schedule gain time.
    fn power(self) -> f64 {
        let throughput = self.throughput();
        throughput * throughput / (self.in_use + self.waiting)
    }
}

/// The rule: a pure state machine, fed one [`Sample`] per interval.
#[derive(Clone, Debug)]
pub(crate) struct Controller {
    floor: u32,
    ceiling: u32,
    step: f64,
    min_elasticity: f64,
    limit: u32,
    /// The lowest mean use time seen, seconds (reported, not used).
    lowest_use: Option<f64>,
    slow_start: bool,
    /// The smoothed elasticity.
    elasticity: Option<f64>,
    /// The last interval in which the limit bound, to compare with.
    previous: Option<Sample>,
    last: Option<Sample>,
    reason: LimitReason,
}

impl Controller {
    pub(crate) fn new(config: &SizingConfig, ceiling: u32) -> Self {
        Self {
            floor: config.floor,
            ceiling,
            step: config.step,
            min_elasticity: config.min_elasticity,
            limit: config.floor.min(ceiling),
            lowest_use: None,
            slow_start: true,
            elasticity: None,
            previous: None,
            last: None,
            reason: LimitReason::Starting,
        }
    }

    pub(crate) fn limit(&self) -> u32 {
        self.limit
    }

    /// How long the next interval lasts: shorter while in slow start.
    fn next_interval(&self, interval: Duration) -> Duration {
        if self.slow_start {
            interval / SLOW_START_PACE
        } else {
            interval
        }
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
        if sample.uses < MIN_SAMPLES || sample.mean_use <= 0.0 || sample.in_use <= 0.0 {
            return false;
        }
        let sample = Sample {
            limit: self.limit,
            ..sample
        };
        self.last = Some(sample);
        let lowest = self
            .lowest_use
            .map_or(sample.mean_use, |low| low.min(sample.mean_use));
        self.lowest_use = Some(lowest);
        if !sample.queued {
            // A limit nobody reaches protects nothing: when the database
            // stalls, every caller runs into it at once. Drift down, one
            // step an interval, toward the square-root staffing level
            // `N + 3√N` (Halfin and Whitt: with callers arriving at random,
            // about one in a thousand would find every connection busy).
            self.previous = None;
            self.slow_start = false;
            self.reason = LimitReason::NotReached;
            let used = (sample.in_use + 3.0 * sample.in_use.sqrt()).ceil() as u32;
            let step = (f64::from(self.limit) * self.step).max(1.0).round() as u32;
            let lower = self.limit.saturating_sub(step).max(used);
            self.limit = self.limit.min(lower.max(self.floor())).min(self.ceiling);
            return true;
        }
        let compared = self
            .previous
            .replace(sample)
            .and_then(|before| elasticity(before, sample));
        let limit = f64::from(self.limit);
        let step = (limit * self.step).max(1.0);
        let (target, reason) = match compared {
            // The last doubling bought too little: back to where it started,
            // and from there one step at a time.
            Some(now) if self.slow_start && now < self.min_elasticity => {
                self.slow_start = false;
                self.elasticity = Some(now);
                (limit / 2.0, LimitReason::PastKnee)
            }
            _ if self.slow_start => {
                self.elasticity = compared.or(self.elasticity);
                (limit * 2.0, LimitReason::SlowStart)
            }
            _ => {
                if let Some(now) = compared {
                    let smoothed = self.elasticity.map_or(now, |e| e + SMOOTHING * (now - e));
                    self.elasticity = Some(smoothed);
                }
                match self.elasticity {
                    Some(e) if e < self.min_elasticity => (limit - step, LimitReason::PastKnee),
                    _ => (limit + step, LimitReason::Headroom),
                }
            }
        };
        let (floor, ceiling) = (self.floor(), self.ceiling);
        let wanted = target.round().max(0.0) as u32;
        let mut next = wanted.clamp(floor, ceiling);
        self.reason = reason;
        if next == self.limit && wanted != self.limit {
            // At a bound: step back from it, so that the next interval
            // still compares two levels (a limit that never moves would
            // never learn that the database changed).
            self.slow_start = false;
            self.reason = LimitReason::Bounded;
            let back = step.round() as u32;
            next = if wanted > self.limit {
                self.limit.saturating_sub(back)
            } else {
                self.limit.saturating_add(back)
            }
            .clamp(floor, ceiling);
        }
        self.limit = next;
        true
    }

    pub(crate) fn report(&self, mode: SizingMode) -> SizingReport {
        let seconds = |s: f64| Duration::from_secs_f64(s);
        SizingReport {
            mode,
            limit: self.limit,
            floor: self.floor,
            ceiling: self.ceiling,
            baseline_use: self.lowest_use.map(seconds),
            recent_use: self.last.map(|sample| seconds(sample.mean_use)),

            recent_in_use: self.last.map_or(0.0, |sample| sample.in_use),
            recent_waiting: self.last.map_or(0.0, |sample| sample.waiting),
            recent_throughput: self.last.map_or(0.0, Sample::throughput),
            elasticity: self.elasticity,
            reason: self.reason,
        }
    }
}

/// Half the elasticity of the callers' power to the limit between two
/// intervals, when their limits differ enough to tell (clamped to
/// [`CLAMP`]). Half, because power is `X² / (N + Q)` and for callers that
/// loop `N + Q` is their number: the measure is then the throughput's
/// elasticity (1 below the knee, 0 past it). The limit, not the mean in use, is the lever: when callers
/// arrive on their own schedule the mean in use follows the use time
/// (Little's law), and comparing by it would read any slower interval as
/// "more connections, no more throughput".
fn elasticity(before: Sample, after: Sample) -> Option<f64> {
    let limit = (f64::from(after.limit) / f64::from(before.limit)).ln();
    if limit.abs() < MIN_CHANGE {
        return None;
    }
    let power = (after.power() / before.power()).ln();
    Some((power / (2.0 * limit)).clamp(CLAMP.0, CLAMP.1))
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
                    recent_waiting: 0.0,
                    recent_throughput: 0.0,
                    elasticity: None,
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
    let mut next = pool.shared.sizing.controller().next_interval(interval);
    rt::spawn(async move {
        loop {
            rt::sleep_until(Instant::now() + next).await;
            let Some(shared) = weak.upgrade() else { return };
            let pool = Pool::from_shared(shared);
            if pool.shared.gauges.flags().closed() {
                return;
            }
            let now = Measured::now(&pool);
            let mut sample = now.since(&since);
            // Queued for the limit, not for a connection being opened.
            sample.queued &= pool.shared.slots.counts().room() == 0;
            let changed = {
                let mut controller = pool.shared.sizing.controller();
                let before = controller.limit();
                let decided = controller.observe(sample);
                next = controller.next_interval(interval);
                if !decided {
                    continue;
                }
                pool.apply_limit(controller.limit());
                controller.limit() != before
            };
            since = now;
            if changed {
                // The first moments at a new limit measure the change, not
                // the limit: connections opening (a new backend starts with
                // cold caches) or closing. The next interval starts after.
                drop(pool);
                rt::sleep_until(Instant::now() + interval / SLOW_START_PACE).await;
                let Some(shared) = weak.upgrade() else { return };
                since = Measured::now(&Pool::from_shared(shared));
            }
        }
    });
}

/// What the limit is decided from, read at one moment.
struct Measured {
    at: Tick,
    use_time: HistogramSnapshot,
    /// The queue's length integrated over time (`WaiterQueue::waited`).
    waited: u64,
}

impl Measured {
    fn now<M: Manager>(pool: &Pool<M>) -> Self {
        let at = pool.shared.clock.now();
        Self {
            at,
            use_time: pool.shared.idle.hot_stats().use_time,
            waited: pool.lock().waiters.waited(at),
        }
    }

    /// The sample from `earlier` to this moment.
    fn since(&self, earlier: &Measured) -> Sample {
        let uses = self.use_time.count() - earlier.use_time.count();
        let held = (self.use_time.sum() - earlier.use_time.sum()).as_secs_f64();
        let elapsed = self.at.since(earlier.at).as_secs_f64();
        let waited = self.waited.wrapping_sub(earlier.waited);
        let per_second = |total: f64| if elapsed > 0.0 { total / elapsed } else { 0.0 };
        Sample {
            uses,
            mean_use: if uses == 0 { 0.0 } else { held / uses as f64 },
            in_use: per_second(held),
            waiting: per_second(Duration::from_nanos(waited).as_secs_f64()),
            queued: waited > 0,
            limit: 0,
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
            waiting: 0.0,
            queued,
            limit: 0,
        }
    }

    /// An interval of 1,000 callers that loop: those not using a
    /// connection are queued for one.
    fn looping(mean_use: f64, in_use: f64) -> Sample {
        Sample {
            waiting: 1000.0 - in_use,
            ..sample(mean_use, in_use, true)
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
    fn slow_start_doubles_until_a_doubling_buys_too_little() {
        let mut controller = Controller::new(&SizingConfig::default(), 200);
        // A database that serves 8 at 5 ms, then shares its time.
        let at = |n: f64| looping(0.005 * (n / 8.0).max(1.0), n);
        for (n, next) in [(2.0, 4), (4.0, 8), (8.0, 16)] {
            controller.observe(at(n));
            assert_eq!(controller.limit(), next);
            assert_eq!(controller.reason, LimitReason::SlowStart);
        }
        controller.observe(at(16.0)); // twice the connections, same work
        assert_eq!(
            (controller.limit(), controller.reason),
            (8, LimitReason::PastKnee)
        );
        assert_eq!(controller.elasticity, Some(0.0));
        let report = controller.report(SizingMode::Adaptive);
        assert_eq!(report.baseline_use, Some(Duration::from_millis(5)));
        assert!(
            (report.recent_throughput - 1600.0).abs() < 1e-6,
            "{report:?}"
        );
    }

    #[test]
    fn callers_on_their_own_schedule_raise_it_while_it_saves_waiting() {
        let mut controller = Controller::new(&SizingConfig::default(), 50);
        controller.slow_start = false;
        controller.limit = 4;
        // 400 arrivals per second, 5 ms each: 2 in use on average whatever
        // the limit, so the throughput tells nothing; the wait does.
        let waiting = |queued: f64| Sample {
            waiting: queued,
            ..sample(0.005, 2.0, true)
        };
        controller.observe(waiting(4.0));
        assert_eq!(controller.limit(), 5);
        controller.observe(waiting(1.6)); // one more connection, 6 ms less waiting
        assert_eq!(
            (controller.limit(), controller.reason),
            (6, LimitReason::Headroom)
        );
        assert!(controller.elasticity.unwrap() > 1.0, "{controller:?}");
        // The same waits at higher limits: it stopped paying, and once the
        // smoothed estimate says so, the limit turns.
        let turned = (0..6).any(|_| {
            controller.observe(waiting(1.6));
            controller.reason == LimitReason::PastKnee
        });
        assert!(turned, "{controller:?}");
    }

    #[test]
    fn a_limit_nobody_reaches_drifts_toward_square_root_staffing() {
        let config = SizingConfig {
            floor: 4,
            ..SizingConfig::default()
        };
        let mut controller = Controller::new(&config, 50);
        controller.limit = 40;
        let mut limits = Vec::new();
        for _ in 0..40 {
            controller.observe(sample(0.002, 2.5, false));
            limits.push(controller.limit());
        }
        assert_eq!(&limits[..3], [36, 32, 29], "one step at a time");
        assert_eq!(limits.last(), Some(&8), "2.5 + 3√2.5 = 7.2: {limits:?}");
        assert!(!controller.slow_start);
        assert_eq!(controller.reason, LimitReason::NotReached);
        for _ in 0..10 {
            controller.observe(sample(0.002, 0.5, false)); // 0.5 + 3√0.5 = 2.6
        }
        assert_eq!(controller.limit(), 4, "never below the floor");
    }

    #[test]
    fn at_a_bound_the_limit_steps_back_to_keep_measuring() {
        let config = SizingConfig {
            floor: 6,
            ..SizingConfig::default()
        };
        let mut controller = Controller::new(&config, 50);
        controller.slow_start = false;
        controller.elasticity = Some(0.0);
        controller.observe(sample(0.005, 6.0, true));
        assert_eq!(
            (controller.limit(), controller.reason),
            (7, LimitReason::Bounded)
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
                let most_fall = (f64::from(before) / 2.0).ceil() as u32;
                prop_assert!(limit + most_fall >= before, "{before} -> {limit}");
            }
        }
    }
}
