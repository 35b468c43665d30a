//! What the requests saw, phase by phase: each request's [`Record`]
//! (start, end, [`Outcome`]), the [`Phase`]s a run is cut into, the
//! [`PhaseRecorder`] that collects both from any number of tasks, and
//! [`PhaseStats`], one phase's figures.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Fault, FaultWindow};

/// How one request ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// It succeeded.
    Ok,
    /// It failed; the string is the kind of failure, as the caller names
    /// it (`"deadline"`, `"57P01"`, `"acquire timeout"`): failures are
    /// counted by it.
    Err(String),
}

impl Outcome {
    /// A failure of kind `kind`.
    ///
    /// ```
    /// use tidewater_lab::faults::Outcome;
    /// assert_eq!(Outcome::failed("deadline"), Outcome::Err("deadline".into()));
    /// ```
    pub fn failed(kind: impl Into<String>) -> Self {
        Outcome::Err(kind.into())
    }

    /// Whether it succeeded.
    ///
    /// ```
    /// assert!(tidewater_lab::faults::Outcome::Ok.is_ok());
    /// ```
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok)
    }
}

/// One request: when it started and ended, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// When it was sent.
    pub start: Instant,
    /// When its answer (or its failure) came.
    pub end: Instant,
    /// How it ended.
    pub outcome: Outcome,
}

impl Record {
    /// How long it took: what its caller waited.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use tidewater_lab::faults::{Outcome, Record};
    ///
    /// let start = Instant::now();
    /// let record = Record { start, end: start + Duration::from_millis(5), outcome: Outcome::Ok };
    /// assert_eq!(record.wait(), Duration::from_millis(5));
    /// ```
    pub fn wait(&self) -> Duration {
        self.end.saturating_duration_since(self.start)
    }
}

/// A stretch of a run: its name, when it began and ended, and the fault
/// injected in it, if any.
///
/// A request belongs to the phase in which it ended: one in flight when a
/// fault strikes counts with that fault, not with the calm before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Phase {
    /// Its name (`"baseline"`, or the fault's name).
    pub name: String,
    /// When it began (inclusive).
    pub start: Instant,
    /// When it ended (exclusive).
    pub end: Instant,
    /// The fault injected in it.
    pub window: Option<FaultWindow>,
}

/// What the requests of one phase saw.
///
/// Durations serialize as seconds (`longest_wait_s`, ...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseStats {
    /// The phase's name.
    pub phase: String,
    /// The fault injected in it.
    pub fault: Option<Fault>,
    /// How long the phase lasted.
    #[serde(rename = "duration_s", with = "secs")]
    pub duration: Duration,
    /// Requests that ended in it.
    pub requests: u64,
    /// Of those, the ones that succeeded.
    pub succeeded: u64,
    /// Of those, the ones that failed.
    pub failed: u64,
    /// Failed requests by kind of failure.
    pub failed_by_kind: BTreeMap<String, u64>,
    /// Of the failed, those that started once the database was back
    /// (`restored_at`): failures of the pool's own making, not of the
    /// outage.
    pub failed_after_restore: u64,
    /// The longest any request of the phase took (zero without requests).
    #[serde(rename = "longest_wait_s", with = "secs")]
    pub longest_wait: Duration,
    /// The 99th percentile of the phase's request latencies (nearest rank:
    /// 99 % of its requests took at most this long; zero without
    /// requests).
    #[serde(rename = "latency_p99_s", with = "secs", default)]
    pub latency_p99: Duration,
    /// How long the database was broken (the fault's window).
    #[serde(rename = "outage_s", with = "opt_secs")]
    pub outage: Option<Duration>,
    /// From the database's return (`restored_at`) to the end of the first
    /// success among the requests started after it (and ended within the
    /// phase); `None` without a fault, or when none succeeded.
    #[serde(rename = "recovery_s", with = "opt_secs")]
    pub recovery: Option<Duration>,
    /// What the injection did.
    pub detail: Option<String>,
}

impl PhaseStats {
    /// What the requests that ended within `phase` saw; `records` may
    /// hold requests of every phase, in any order.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use tidewater_lab::faults::{Outcome, Phase, PhaseStats, Record};
    ///
    /// let t0 = Instant::now();
    /// let ms = |n| t0 + Duration::from_millis(n);
    /// let phase = Phase { name: "baseline".into(), start: t0, end: ms(100), window: None };
    /// let records = [
    ///     Record { start: ms(10), end: ms(20), outcome: Outcome::Ok },
    ///     Record { start: ms(150), end: ms(160), outcome: Outcome::Ok }, // a later phase
    /// ];
    /// let stats = PhaseStats::compute(&phase, &records);
    /// assert_eq!((stats.requests, stats.recovery), (1, None));
    /// ```
    pub fn compute(phase: &Phase, records: &[Record]) -> Self {
        let mut stats = PhaseStats {
            phase: phase.name.clone(),
            fault: phase.window.as_ref().map(|window| window.fault),
            duration: phase.end.saturating_duration_since(phase.start),
            requests: 0,
            succeeded: 0,
            failed: 0,
            failed_by_kind: BTreeMap::new(),
            failed_after_restore: 0,
            longest_wait: Duration::ZERO,
            latency_p99: Duration::ZERO,
            outage: phase.window.as_ref().map(FaultWindow::outage),
            recovery: None,
            detail: phase.window.as_ref().map(|window| window.detail.clone()),
        };
        let restored_at = phase.window.as_ref().map(|window| window.restored_at);
        let mut first_success: Option<Instant> = None;
        let within = |record: &&Record| record.end >= phase.start && record.end < phase.end;
        let mut waits = Vec::new();
        for record in records.iter().filter(within) {
            stats.requests += 1;
            waits.push(record.wait());
            stats.longest_wait = stats.longest_wait.max(record.wait());
            let after_restore = restored_at.is_some_and(|restored| record.start >= restored);
            match &record.outcome {
                Outcome::Ok => {
                    stats.succeeded += 1;
                    if after_restore {
                        first_success =
                            Some(first_success.map_or(record.end, |end| end.min(record.end)));
                    }
                }
                Outcome::Err(kind) => {
                    stats.failed += 1;
                    stats.failed_after_restore += u64::from(after_restore);
                    *stats.failed_by_kind.entry(kind.clone()).or_default() += 1;
                }
            }
        }
        stats.recovery = restored_at
            .zip(first_success)
            .map(|(restored, success)| success.saturating_duration_since(restored));
        stats.latency_p99 = nearest_rank(&mut waits, 0.99);
        stats
    }
}

/// The `q` quantile of `waits` by nearest rank (the smallest wait that at
/// least `q` of them do not exceed); zero when there are none.
///
/// ```text
/// 100 waits of 1..=100 ms: q 0.99 -> 99 ms, q 1.0 -> 100 ms, q 0.5 -> 50 ms
/// ```
fn nearest_rank(waits: &mut [Duration], q: f64) -> Duration {
    if waits.is_empty() {
        return Duration::ZERO;
    }
    waits.sort_unstable();
    let rank = (q * waits.len() as f64).ceil() as usize;
    waits[rank.clamp(1, waits.len()) - 1]
}

/// [`PhaseStats::compute`] for each of `phases`, in order.
///
/// ```
/// use std::time::{Duration, Instant};
/// use tidewater_lab::faults::{Phase, phase_stats};
///
/// let t0 = Instant::now();
/// let phase = |name: &str, from, to| Phase {
///     name: name.into(),
///     start: t0 + Duration::from_secs(from),
///     end: t0 + Duration::from_secs(to),
///     window: None,
/// };
/// let stats = phase_stats(&[phase("a", 0, 1), phase("b", 1, 2)], &[]);
/// assert_eq!(stats.len(), 2);
/// assert_eq!(stats[1].duration, Duration::from_secs(1));
/// ```
pub fn phase_stats(phases: &[Phase], records: &[Record]) -> Vec<PhaseStats> {
    phases
        .iter()
        .map(|phase| PhaseStats::compute(phase, records))
        .collect()
}

/// Collects requests and phase boundaries from any number of tasks, then
/// computes each phase's [`PhaseStats`]. Clones share the same records.
///
/// Phases follow one another: [`begin_phase`](Self::begin_phase) ends the
/// one before, [`end`](Self::end) the last. A request belongs to the phase
/// in which it ended (see [`Phase`]); those that ended before the first
/// phase or after the end are left out.
#[derive(Clone, Debug, Default)]
pub struct PhaseRecorder {
    inner: Arc<Mutex<Recorded>>,
}

/// What a [`PhaseRecorder`] holds.
#[derive(Debug, Default)]
struct Recorded {
    /// Every request so far.
    records: Vec<Record>,
    /// Phases begun so far, the last one open until `end` is set.
    phases: Vec<(String, Instant, Option<FaultWindow>)>,
    /// When the last phase ended.
    end: Option<Instant>,
}

impl PhaseRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one request.
    pub fn record(&self, start: Instant, end: Instant, outcome: Outcome) {
        self.lock().records.push(Record {
            start,
            end,
            outcome,
        });
    }

    /// Begins a phase now (ending the one before), with the fault window
    /// if it is known already.
    pub fn begin_phase(&self, name: impl Into<String>, window: Option<FaultWindow>) {
        self.begin_phase_at(name, Instant::now(), window);
    }

    /// Begins a phase at `at`.
    pub fn begin_phase_at(
        &self,
        name: impl Into<String>,
        at: Instant,
        window: Option<FaultWindow>,
    ) {
        let mut recorded = self.lock();
        recorded.phases.push((name.into(), at, window));
        recorded.end = None;
    }

    /// Attaches the window of the fault injected in the current phase.
    pub fn set_window(&self, window: FaultWindow) {
        if let Some(phase) = self.lock().phases.last_mut() {
            phase.2 = Some(window);
        }
    }

    /// Ends the last phase now.
    pub fn end(&self) {
        self.end_at(Instant::now());
    }

    /// Ends the last phase at `at`.
    pub fn end_at(&self, at: Instant) {
        self.lock().end = Some(at);
    }

    /// When the first success among the requests started at or after
    /// `since` ended, if one has.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use tidewater_lab::faults::{Outcome, PhaseRecorder};
    ///
    /// let recorder = PhaseRecorder::new();
    /// let t0 = Instant::now();
    /// recorder.record(t0, t0 + Duration::from_millis(5), Outcome::Ok);
    /// assert_eq!(recorder.first_success_since(t0 + Duration::from_millis(1)), None);
    /// assert!(recorder.first_success_since(t0).is_some());
    /// ```
    pub fn first_success_since(&self, since: Instant) -> Option<Instant> {
        self.lock()
            .records
            .iter()
            .filter(|record| record.start >= since && record.outcome.is_ok())
            .map(|record| record.end)
            .min()
    }

    /// Requests recorded so far.
    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// Whether no request was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The phases so far; the last one ends at [`end`](Self::end), or now
    /// if not ended yet.
    pub fn phases(&self) -> Vec<Phase> {
        let recorded = self.lock();
        let last_end = recorded.end.unwrap_or_else(Instant::now);
        let mut phases = Vec::with_capacity(recorded.phases.len());
        for (i, (name, start, window)) in recorded.phases.iter().enumerate() {
            let end = recorded
                .phases
                .get(i + 1)
                .map_or(last_end, |(_, next, _)| *next);
            phases.push(Phase {
                name: name.clone(),
                start: *start,
                end,
                window: window.clone(),
            });
        }
        phases
    }

    /// A copy of every request recorded so far.
    pub fn records(&self) -> Vec<Record> {
        self.lock().records.clone()
    }

    /// Each phase's figures, in order.
    pub fn stats(&self) -> Vec<PhaseStats> {
        let phases = self.phases();
        let recorded = self.lock();
        phase_stats(&phases, &recorded.records)
    }
}

/// Serde of a [`Duration`] as seconds.
mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(value.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        let seconds = f64::deserialize(deserializer)?;
        Duration::try_from_secs_f64(seconds).map_err(serde::de::Error::custom)
    }
}

/// Serde of an optional [`Duration`] as seconds, `null` for none.
mod opt_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => serializer.serialize_some(&duration.as_secs_f64()),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(deserializer)?
            .map(|seconds| Duration::try_from_secs_f64(seconds).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        Instant::now()
    }

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn record(t0: Instant, start: u64, end: u64, outcome: Outcome) -> Record {
        Record {
            start: at(t0, start),
            end: at(t0, end),
            outcome,
        }
    }

    fn window(t0: Instant, fault: Fault, broken: u64, restored: u64) -> FaultWindow {
        FaultWindow {
            fault,
            broken_at: at(t0, broken),
            restored_at: at(t0, restored),
            detail: "test".into(),
        }
    }

    #[test]
    fn a_phase_counts_its_requests_failures_by_kind_and_the_longest_wait() {
        let t0 = t0();
        let phase = Phase {
            name: "crash".into(),
            start: at(t0, 1_000),
            end: at(t0, 5_000),
            window: Some(window(t0, Fault::Crash, 1_100, 3_000)),
        };
        let records = [
            // Ended before the phase: left out.
            record(t0, 900, 950, Outcome::Ok),
            // In flight when the phase began: it counts here.
            record(t0, 900, 4_000, Outcome::failed("deadline")),
            record(t0, 1_000, 1_010, Outcome::Ok),
            record(t0, 1_200, 3_200, Outcome::failed("deadline")),
            record(t0, 1_300, 1_301, Outcome::failed("57P01")),
            record(t0, 1_400, 1_401, Outcome::failed("57P01")),
            record(t0, 2_000, 2_500, Outcome::failed("acquire timeout")),
            // Ended after the phase: left out.
            record(t0, 4_900, 5_000, Outcome::failed("deadline")),
        ];
        let stats = PhaseStats::compute(&phase, &records);
        assert_eq!(stats.phase, "crash");
        assert_eq!(stats.fault, Some(Fault::Crash));
        assert_eq!(stats.duration, Duration::from_secs(4));
        assert_eq!((stats.requests, stats.succeeded, stats.failed), (6, 1, 5));
        let kinds: Vec<_> = stats
            .failed_by_kind
            .iter()
            .map(|(kind, n)| (kind.as_str(), *n))
            .collect();
        assert_eq!(
            kinds,
            [("57P01", 2), ("acquire timeout", 1), ("deadline", 2)]
        );
        assert_eq!(stats.longest_wait, Duration::from_millis(3_100));
        // Six waits: the p99's rank is the sixth, the longest.
        assert_eq!(stats.latency_p99, Duration::from_millis(3_100));
        assert_eq!(stats.outage, Some(Duration::from_millis(1_900)));
        assert_eq!(stats.recovery, None, "no success after the return");
        // Started at 1 200 .. 2 000, before the return at 3 000.
        assert_eq!(stats.failed_after_restore, 0);
        assert_eq!(stats.detail.as_deref(), Some("test"));
    }

    #[test]
    fn recovery_is_from_the_return_to_the_first_success_started_after_it() {
        let t0 = t0();
        let phase = Phase {
            name: "hang".into(),
            start: at(t0, 0),
            end: at(t0, 10_000),
            window: Some(window(t0, Fault::Hang, 100, 3_000)),
        };
        let records = [
            // Started before the return: does not count, though it ends after.
            record(t0, 2_900, 3_050, Outcome::Ok),
            // Failed after the return.
            record(t0, 3_000, 3_100, Outcome::failed("closed")),
            // Started later but ended first: this is the first success.
            record(t0, 3_200, 3_400, Outcome::Ok),
            record(t0, 3_100, 3_900, Outcome::Ok),
        ];
        let stats = PhaseStats::compute(&phase, &records);
        assert_eq!(stats.recovery, Some(Duration::from_millis(400)));
        assert_eq!((stats.requests, stats.failed), (4, 1));
        assert_eq!(stats.failed_after_restore, 1);
    }

    #[test]
    fn a_phase_without_requests_or_fault_is_all_zero() {
        let t0 = t0();
        let phase = Phase {
            name: "baseline".into(),
            start: t0,
            end: at(t0, 10),
            window: None,
        };
        let stats = PhaseStats::compute(&phase, &[]);
        assert_eq!((stats.requests, stats.failed), (0, 0));
        assert_eq!(stats.longest_wait, Duration::ZERO);
        assert_eq!(
            (stats.outage, stats.recovery, stats.fault),
            (None, None, None)
        );
        // A success without a fault is no recovery.
        let stats = PhaseStats::compute(&phase, &[record(t0, 1, 2, Outcome::Ok)]);
        assert_eq!(stats.recovery, None);
    }

    #[test]
    fn the_recorder_cuts_phases_at_their_boundaries() {
        let t0 = t0();
        let recorder = PhaseRecorder::new();
        recorder.begin_phase_at("baseline", t0, None);
        recorder.begin_phase_at("restart", at(t0, 100), None);
        recorder.set_window(window(t0, Fault::Restart, 110, 150));
        recorder.begin_phase_at("terminate-backends", at(t0, 300), None);
        recorder.end_at(at(t0, 400));
        // Recorded from several tasks, out of order.
        let clones: Vec<_> = (0..3).map(|_| recorder.clone()).collect();
        clones[0].record(at(t0, 350), at(t0, 351), Outcome::failed("57P01"));
        clones[1].record(at(t0, 10), at(t0, 20), Outcome::Ok);
        clones[2].record(at(t0, 120), at(t0, 130), Outcome::failed("57P01"));
        clones[0].record(at(t0, 160), at(t0, 170), Outcome::Ok);
        clones[1].record(at(t0, 99), at(t0, 105), Outcome::Ok);
        clones[2].record(at(t0, 390), at(t0, 401), Outcome::Ok); // ended after the end
        assert_eq!(recorder.len(), 6);

        let stats = recorder.stats();
        let names: Vec<_> = stats.iter().map(|s| s.phase.as_str()).collect();
        assert_eq!(names, ["baseline", "restart", "terminate-backends"]);
        let counts: Vec<_> = stats.iter().map(|s| (s.requests, s.failed)).collect();
        // (99, 105) was in flight when the restart began: it counts there.
        assert_eq!(counts, [(1, 0), (3, 1), (1, 1)]);
        assert_eq!(stats[1].recovery, Some(Duration::from_millis(20)));
        assert_eq!(stats[1].outage, Some(Duration::from_millis(40)));
        assert_eq!(stats[2].duration, Duration::from_millis(100));
        assert_eq!(recorder.first_success_since(at(t0, 150)), Some(at(t0, 170)));
    }

    #[test]
    fn stats_serialize_durations_as_seconds_and_read_back() {
        let t0 = t0();
        let phase = Phase {
            name: "crash".into(),
            start: t0,
            end: at(t0, 2_000),
            window: Some(window(t0, Fault::Crash, 0, 1_500)),
        };
        let stats = PhaseStats::compute(&phase, &[record(t0, 1_500, 1_750, Outcome::Ok)]);
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["fault"], "crash");
        assert_eq!(json["duration_s"], 2.0);
        assert_eq!(json["outage_s"], 1.5);
        assert_eq!(json["recovery_s"], 0.25);
        assert_eq!(json["longest_wait_s"], 0.25);
        assert_eq!(json["latency_p99_s"], 0.25);
        let back: PhaseStats = serde_json::from_value(json).unwrap();
        assert_eq!(back, stats);
    }

    #[test]
    fn the_p99_is_the_nearest_rank() {
        let mut waits: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(nearest_rank(&mut waits, 0.99), Duration::from_millis(99));
        assert_eq!(nearest_rank(&mut waits, 0.5), Duration::from_millis(50));
        assert_eq!(nearest_rank(&mut waits, 1.0), Duration::from_millis(100));
        assert_eq!(
            nearest_rank(&mut waits[..1], 0.99),
            Duration::from_millis(1)
        );
        assert_eq!(nearest_rank(&mut [], 0.99), Duration::ZERO);
    }
}
