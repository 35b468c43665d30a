//! Recording what the virtual users were answered: latency histograms
//! (HdrHistogram, microseconds, 3 significant digits), answers counted by
//! status and problem type, per operation, and per second for the
//! timeline.
//!
//! What counts as an error, and what as unavailable:
//! - an **error** is any answer the scenario does not expect: a transport
//!   failure (no connection, a timeout), a 5xx, or a 4xx other than
//!   `422 insufficient-funds` on a transfer (a refusal the bank is right
//!   to give when the balance read a moment before has been spent since);
//! - **unavailable** is the part of them where the service did not answer
//!   at all or answered 5xx: transport failures and 5xx.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// A request of the scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `GET /api/accounts/{id}`.
    ReadAccount,
    /// `POST /api/transfers` with a new `Idempotency-Key`.
    Transfer,
    /// The same transfer sent again with the same key: a duplicate
    /// delivery after a `201`, or a retry after an unknown outcome.
    Resend,
    /// `GET /api/accounts/{id}/ledger`.
    Ledger,
}

impl Op {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::ReadAccount => "read_account",
            Self::Transfer => "transfer",
            Self::Resend => "resend",
            Self::Ledger => "ledger",
        }
    }
}

/// How a request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP answer: its status and, for a problem, the last segment of
    /// its `type` (`pool-timeout`).
    Answered {
        /// The status code.
        status: u16,
        /// The problem type's slug.
        problem: Option<String>,
    },
    /// No answer: `timeout`, `connect` or `other`.
    Transport(&'static str),
}

impl Outcome {
    /// How it is counted in the report: `200`, `422 insufficient-funds`,
    /// `transport timeout`.
    pub fn label(&self) -> String {
        match self {
            Self::Answered {
                status,
                problem: Some(problem),
            } => format!("{status} {problem}"),
            Self::Answered { status, .. } => status.to_string(),
            Self::Transport(kind) => format!("transport {kind}"),
        }
    }
}

/// What an outcome means for the error rate and the availability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// What the scenario expects.
    Ok,
    /// Not what it expects; `unavailable` when the service did not answer
    /// or answered 5xx.
    Error {
        /// A transport failure or a 5xx.
        unavailable: bool,
    },
}

/// Classifies an outcome of `op` (see the module documentation).
pub fn classify(op: Op, outcome: &Outcome) -> Class {
    match outcome {
        Outcome::Transport(_) => Class::Error { unavailable: true },
        Outcome::Answered { status, problem } => match status {
            200..=299 => Class::Ok,
            422 if matches!(op, Op::Transfer | Op::Resend)
                && problem.as_deref() == Some("insufficient-funds") =>
            {
                Class::Ok
            }
            500.. => Class::Error { unavailable: true },
            _ => Class::Error { unavailable: false },
        },
    }
}

/// The slowest latency recorded exactly; slower ones count as this.
const HIGHEST_MICROS: u64 = 600_000_000;

/// A latency histogram in microseconds.
#[derive(Clone, Debug)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Self(Histogram::new_with_bounds(1, HIGHEST_MICROS, 3).expect("valid histogram bounds"))
    }
}

impl Latencies {
    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(micros.max(1));
    }

    /// Adds every latency of `other`.
    pub fn merge(&mut self, other: &Self) {
        // Same bounds on both sides: the addition cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// How many were recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// Quantile `q` (0 to 1), in seconds; 0 when empty.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.value_at_quantile(q) as f64 / 1e6
    }

    /// The largest, in seconds; 0 when empty.
    pub fn max(&self) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.max() as f64 / 1e6
    }

    /// The mean, in seconds; 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.mean() / 1e6
    }

    /// Forgets everything recorded.
    pub fn reset(&mut self) {
        self.0.reset();
    }

    /// p50, p95, p99, max and mean, in seconds.
    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            p50: self.quantile(0.50),
            p95: self.quantile(0.95),
            p99: self.quantile(0.99),
            max: self.max(),
            mean: self.mean(),
        }
    }
}

/// Latency quantiles, in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// Counts and latencies of one operation, or of all.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Requests.
    pub requests: u64,
    /// Errors (see the module documentation).
    pub errors: u64,
    /// Transport failures and 5xx.
    pub unavailable: u64,
    /// Their latencies, errors included.
    pub latency: Latencies,
}

impl Tally {
    fn record(&mut self, latency: Duration, class: Class) {
        self.requests += 1;
        if let Class::Error { unavailable } = class {
            self.errors += 1;
            if unavailable {
                self.unavailable += 1;
            }
        }
        self.latency.record(latency);
    }

    /// Adds `other`'s counts and latencies.
    pub fn merge(&mut self, other: &Self) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.unavailable += other.unavailable;
        self.latency.merge(&other.latency);
    }
}

/// Everything recorded over a stretch of the run.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// All requests.
    pub all: Tally,
    /// By operation.
    pub ops: BTreeMap<Op, Tally>,
    /// Answers by [`Outcome::label`].
    pub outcomes: BTreeMap<String, u64>,
}

impl Stats {
    /// Records one request.
    pub fn record(&mut self, op: Op, latency: Duration, outcome: &Outcome) {
        let class = classify(op, outcome);
        self.all.record(latency, class);
        self.ops.entry(op).or_default().record(latency, class);
        *self.outcomes.entry(outcome.label()).or_default() += 1;
    }

    /// Adds `other`.
    pub fn merge(&mut self, other: &Self) {
        self.all.merge(&other.all);
        for (op, tally) in &other.ops {
            self.ops.entry(*op).or_default().merge(tally);
        }
        for (label, count) in &other.outcomes {
            *self.outcomes.entry(label.clone()).or_default() += count;
        }
    }

    /// Errors over requests (0 without requests).
    pub fn error_rate(&self) -> f64 {
        ratio(self.all.errors, self.all.requests)
    }

    /// Requests answered without a transport failure or a 5xx, over all
    /// requests (1 without requests).
    pub fn availability(&self) -> f64 {
        if self.all.requests == 0 {
            return 1.0;
        }
        1.0 - ratio(self.all.unavailable, self.all.requests)
    }
}

/// `part / whole`, 0 when `whole` is 0.
pub fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// One request, as a [`Tap`] sees it when it is recorded.
#[derive(Clone, Copy, Debug)]
pub struct Tapped<'a> {
    /// What it was.
    pub op: Op,
    /// When it was sent (its end less its latency).
    pub start: Instant,
    /// When its answer (or failure) came.
    pub end: Instant,
    /// How it ended.
    pub outcome: &'a Outcome,
}

/// Called with every request a [`Recorder`] records, as it is recorded:
/// how `tidewater-lab drill` sees each request's start, end and outcome, and
/// `tidewater-lab soak` the first request.
pub type Tap = Arc<dyn Fn(Tapped<'_>) + Send + Sync>;

/// Where the users record: the current phase's statistics and the
/// current second's, each taken (and restarted) by its reader; and,
/// with a [`Tap`], each request as it ends.
#[derive(Default)]
pub struct Recorder {
    inner: Mutex<(Stats, Tally)>,
    tap: Option<Tap>,
}

impl Recorder {
    /// A recorder that also hands every request to `tap`.
    pub fn with_tap(tap: Tap) -> Self {
        Self {
            tap: Some(tap),
            ..Self::default()
        }
    }

    /// Records one request.
    pub fn record(&self, op: Op, latency: Duration, outcome: &Outcome) {
        let class = classify(op, outcome);
        {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.0.record(op, latency, outcome);
            inner.1.record(latency, class);
        }
        if let Some(tap) = &self.tap {
            let end = Instant::now();
            tap(Tapped {
                op,
                start: end.checked_sub(latency).unwrap_or(end),
                end,
                outcome,
            });
        }
    }

    /// The phase's statistics so far; the next phase starts empty.
    pub fn take_phase(&self) -> Stats {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut inner.0)
    }

    /// The second's requests so far; the next second starts empty.
    pub fn take_second(&self) -> Tally {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let second = inner.1.clone();
        inner.1.requests = 0;
        inner.1.errors = 0;
        inner.1.unavailable = 0;
        inner.1.latency.reset();
        second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16, problem: Option<&str>) -> Outcome {
        Outcome::Answered {
            status,
            problem: problem.map(str::to_owned),
        }
    }

    #[test]
    fn what_counts_as_an_error() {
        let funds = answered(422, Some("insufficient-funds"));
        assert_eq!(classify(Op::Transfer, &funds), Class::Ok);
        assert_eq!(classify(Op::Resend, &funds), Class::Ok);
        // On a read it would be a bug.
        assert_eq!(
            classify(Op::ReadAccount, &funds),
            Class::Error { unavailable: false }
        );
        assert_eq!(
            classify(Op::Transfer, &answered(422, Some("idempotency-key-reused"))),
            Class::Error { unavailable: false }
        );
        assert_eq!(
            classify(Op::ReadAccount, &answered(404, Some("account-not-found"))),
            Class::Error { unavailable: false }
        );
        assert_eq!(
            classify(Op::Transfer, &answered(503, Some("pool-timeout"))),
            Class::Error { unavailable: true }
        );
        assert_eq!(
            classify(Op::Ledger, &Outcome::Transport("timeout")),
            Class::Error { unavailable: true }
        );
        assert_eq!(classify(Op::Transfer, &answered(201, None)), Class::Ok);
    }

    #[test]
    fn rates_and_labels() {
        let mut stats = Stats::default();
        let ms = Duration::from_millis;
        for _ in 0..96 {
            stats.record(Op::ReadAccount, ms(2), &answered(200, None));
        }
        stats.record(
            Op::Transfer,
            ms(3),
            &answered(422, Some("insufficient-funds")),
        );
        stats.record(
            Op::Transfer,
            ms(4),
            &answered(404, Some("account-not-found")),
        );
        stats.record(Op::Transfer, ms(5000), &answered(503, Some("pool-timeout")));
        stats.record(Op::Ledger, ms(9000), &Outcome::Transport("timeout"));
        assert_eq!(stats.all.requests, 100);
        assert_eq!(stats.all.errors, 3);
        assert!((stats.error_rate() - 0.03).abs() < 1e-12);
        assert!((stats.availability() - 0.98).abs() < 1e-12);
        assert_eq!(stats.outcomes["200"], 96);
        assert_eq!(stats.outcomes["503 pool-timeout"], 1);
        assert_eq!(stats.outcomes["transport timeout"], 1);
        assert_eq!(stats.ops[&Op::Transfer].requests, 3);
        assert_eq!(stats.ops[&Op::Transfer].errors, 2);
        let summary = stats.all.latency.summary();
        assert!((summary.p50 - 0.002).abs() < 1e-5, "{summary:?}");
        assert!((summary.max - 9.0).abs() < 0.01, "{summary:?}");

        let mut merged = Stats::default();
        merged.merge(&stats);
        merged.merge(&stats);
        assert_eq!(merged.all.requests, 200);
        assert_eq!(merged.outcomes["200"], 192);
        assert_eq!(merged.all.latency.count(), 200);
    }

    #[test]
    fn the_recorder_hands_out_seconds_and_phases() {
        let recorder = Recorder::default();
        recorder.record(
            Op::ReadAccount,
            Duration::from_millis(1),
            &answered(200, None),
        );
        recorder.record(
            Op::ReadAccount,
            Duration::from_millis(1),
            &answered(500, None),
        );
        let second = recorder.take_second();
        assert_eq!(
            (second.requests, second.errors, second.unavailable),
            (2, 1, 1)
        );
        assert_eq!(recorder.take_second().requests, 0);
        recorder.record(
            Op::ReadAccount,
            Duration::from_millis(1),
            &answered(200, None),
        );
        assert_eq!(recorder.take_phase().all.requests, 3);
        assert_eq!(recorder.take_phase().all.requests, 0);
        assert_eq!(recorder.take_second().requests, 1);
    }

    #[test]
    fn the_tap_sees_each_request_with_its_start_and_end() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = Recorder::with_tap({
            let seen = seen.clone();
            Arc::new(move |tapped: Tapped<'_>| {
                seen.lock().unwrap().push((
                    tapped.op,
                    tapped.end - tapped.start,
                    tapped.outcome.label(),
                ));
            })
        });
        recorder.record(
            Op::Transfer,
            Duration::from_millis(7),
            &answered(503, Some("pool-timeout")),
        );
        recorder.record(Op::Ledger, Duration::from_millis(2), &answered(200, None));
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                (
                    Op::Transfer,
                    Duration::from_millis(7),
                    "503 pool-timeout".to_owned()
                ),
                (Op::Ledger, Duration::from_millis(2), "200".to_owned()),
            ]
        );
        // The statistics are kept as without a tap.
        assert_eq!(recorder.take_phase().all.requests, 2);
    }

    #[test]
    fn empty_is_zero_not_nan() {
        let stats = Stats::default();
        assert_eq!(stats.error_rate(), 0.0);
        assert_eq!(stats.availability(), 1.0);
        assert_eq!(stats.all.latency.summary(), LatencySummary::default());
    }
}
