//! The report of a load run: its numbers (what `--json` prints), the
//! pool's numbers read from two scrapes of `/metrics`, and the text
//! printed for people.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::load::check::CheckReport;
use crate::load::ramp::RampReport;
use crate::load::record::LatencySummary;
use crate::load::slo::{Verdict, percent, seconds, write_verdicts};
use crate::scrape::Metrics;
use crate::service::{LogSummary, StopReport};
use tidewater::metric_names::{
    ACQUIRED, CONNECTION_MAX, CONNECTION_TIMEOUTS, CONNECTION_USE_TIME, CONNECTION_WAIT_TIME,
};

/// The whole report, as `--json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// The command line that made it.
    pub command: String,
    /// When the load started (RFC 3339).
    pub started_at: String,
    /// What was loaded.
    pub target: TargetInfo,
    /// Users (a ramp: its largest step run).
    pub users: u32,
    /// What they did.
    pub scenario: ScenarioInfo,
    /// Seconds from the first user's start to the last one's end (a
    /// ramp: all steps).
    pub duration_seconds: f64,
    /// Requests made by the users.
    pub requests: u64,
    /// Requests per second.
    pub throughput_rps: f64,
    /// Request latency, errors included.
    pub latency_seconds: LatencySummary,
    /// Requests in error (see `docs/lab.md`).
    pub errors: u64,
    /// Errors over requests.
    pub error_rate: f64,
    /// Requests not answered, or answered 5xx.
    pub unavailable: u64,
    /// Requests answered without a transport failure or 5xx, over all.
    pub availability: f64,
    /// Answers counted by status and problem type (`503 pool-timeout`,
    /// `transport timeout`).
    pub answers: BTreeMap<String, u64>,
    /// By operation: `read_account`, `transfer`, `resend`, `ledger`.
    pub operations: BTreeMap<String, OperationReport>,
    /// The pool, from the service's `/metrics` and `/api/pools`.
    pub pool: PoolSection,
    /// The spawned service's memory; `null` for a URL target (unknown).
    pub memory: Option<MemoryReport>,
    /// What the spawned service logged.
    pub service_log: Option<LogSummary>,
    /// How the spawned service stopped.
    pub shutdown: Option<StopReport>,
    /// The correctness check.
    pub correctness: CheckReport,
    /// Every verdict.
    pub verdicts: Vec<Verdict>,
    /// Every verdict passed.
    pub passed: bool,
    /// The steps and the knee, for `--ramp`.
    pub ramp: Option<RampReport>,
    /// One point per second.
    pub timeline: Vec<SecondSample>,
}

/// What was loaded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetInfo {
    /// The base URL.
    pub url: String,
    /// Started by the run.
    pub spawned: bool,
    /// The database kind, when the service said it (spawned only).
    pub backend: Option<String>,
}

/// The scenario's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioInfo {
    /// Mean think time before each request, seconds.
    pub think_mean_seconds: f64,
    /// Chance of re-sending a transfer answered 201.
    pub resend_probability: f64,
    /// Chance of reading the ledger in a round.
    pub ledger_probability: f64,
    /// Accounts opened for the run.
    pub accounts: u32,
    /// Each one's opening balance, cents.
    pub opening_balance: i64,
    /// The request budget, if one was given.
    pub request_budget: Option<u64>,
}

/// One operation's numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperationReport {
    /// Requests.
    pub requests: u64,
    /// Errors.
    pub errors: u64,
    /// Latency.
    pub latency_seconds: LatencySummary,
}

/// The pool during the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolSection {
    /// Its name (`pool_name`).
    pub name: String,
    /// Most connections.
    pub max_size: u32,
    /// Checkouts during the run (`tidewater_acquired_total`).
    pub checkouts: u64,
    /// Checkouts per second.
    pub checkouts_per_second: f64,
    /// How long a connection was held per checkout
    /// (`db_client_connection_use_time_seconds`): the mean (sum / count)
    /// and the p99 bucket's upper bound.
    pub use_time_seconds: UseTime,
    /// How long a checkout waited (`db_client_connection_wait_time_seconds`),
    /// each value the upper bound of its histogram bucket.
    pub acquire_wait_seconds: AcquireWait,
    /// `get()` calls that ran out of `acquire_timeout` during the run.
    pub timeouts: u64,
    /// Most connections in use at a one-second sample of `/api/pools`.
    pub peak_in_use: u32,
    /// Most callers waiting at a sample.
    pub peak_waiters: u32,
    /// The limit on connections in use over the run's samples, when the
    /// pool's sizing is adaptive; `null` when fixed.
    #[serde(default)]
    pub adaptive_limit: Option<LimitRange>,
    /// Both scrapes of `/metrics` were read.
    pub metrics_read: bool,
}

/// The adaptive limit over a run, from its one-second samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitRange {
    /// The lowest sampled.
    pub min: u32,
    /// The highest sampled.
    pub max: u32,
    /// At the last sample.
    pub last: u32,
}

impl LimitRange {
    /// The range over `samples` of adaptive pools; `None` when no sample
    /// is of an adaptive pool.
    pub fn of(samples: impl IntoIterator<Item = PoolSample>) -> Option<Self> {
        samples.into_iter().filter(|sample| sample.adaptive).fold(
            None,
            |range: Option<Self>, sample| {
                let limit = sample.limit;
                Some(match range {
                    None => Self {
                        min: limit,
                        max: limit,
                        last: limit,
                    },
                    Some(range) => Self {
                        min: range.min.min(limit),
                        max: range.max.max(limit),
                        last: limit,
                    },
                })
            },
        )
    }
}

impl std::fmt::Display for LimitRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "adaptive limit {} at the end ({} to {} during the run)",
            self.last, self.min, self.max
        )
    }
}

/// Connection use time, seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UseTime {
    /// Sum over count.
    pub mean: f64,
    /// Upper bound of the p99 bucket.
    pub p99: f64,
}

/// Acquisition wait, seconds: upper bounds of histogram buckets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AcquireWait {
    /// At least half the checkouts waited at most this.
    pub p50: f64,
    /// At least 99% waited at most this.
    pub p99: f64,
    /// No checkout waited longer (the upper bound of the highest
    /// non-empty bucket).
    pub max: f64,
    /// Some waits fell above the last finite bucket: the values at the
    /// last bound are lower bounds.
    pub above_last_bucket: bool,
}

/// The spawned service's resident memory.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryReport {
    /// The most it held (`VmHWM`), bytes.
    pub peak_rss_bytes: u64,
    /// What it held at the end of the load, before it stopped, bytes.
    pub final_rss_bytes: u64,
}

/// One second of the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SecondSample {
    /// Seconds since the load started, at the end of this second.
    pub t: f64,
    /// Users running.
    pub users: u32,
    /// Requests finished in the second.
    pub requests: u64,
    /// Of them, errors.
    pub errors: u64,
    /// Of them, transport failures and 5xx.
    pub unavailable: u64,
    /// Their latency p50, seconds.
    pub latency_p50: f64,
    /// Their latency p99, seconds.
    pub latency_p99: f64,
    /// The pool at the sample; `null` when `/api/pools` did not answer.
    pub pool: Option<PoolSample>,
    /// The spawned service's resident memory, bytes.
    pub rss_bytes: Option<u64>,
}

/// The pool's numbers at one sample of `/api/pools`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolSample {
    /// Connections checked out.
    pub in_use: u32,
    /// Connections idle.
    pub idle: u32,
    /// Connections open.
    pub size: u32,
    /// Most allowed.
    pub max_size: u32,
    /// Callers may use at once: `max_size`, or the adaptive limit.
    #[serde(default)]
    pub limit: u32,
    /// Whether the pool's sizing is adaptive.
    #[serde(default)]
    pub adaptive: bool,
    /// Callers waiting.
    pub waiters: u32,
}

/// The pool's numbers between two scrapes of `/metrics`, `seconds` apart.
pub fn pool_numbers(start: &Metrics, end: &Metrics, pool: &str, seconds: f64) -> PoolSection {
    let delta = |name: &str| {
        let before = start.counter(name, Some(pool)).unwrap_or(0.0);
        end.counter(name, Some(pool))
            .map(|after| (after - before).max(0.0))
    };
    let checkouts = delta(ACQUIRED).unwrap_or(0.0) as u64;
    let wait = end.histogram(CONNECTION_WAIT_TIME, Some(pool)).map(|end| {
        match start.histogram(CONNECTION_WAIT_TIME, Some(pool)) {
            Some(start) => end.since(&start),
            None => end,
        }
    });
    let used = end.histogram(CONNECTION_USE_TIME, Some(pool)).map(|end| {
        match start.histogram(CONNECTION_USE_TIME, Some(pool)) {
            Some(start) => end.since(&start),
            None => end,
        }
    });
    let mut acquire = AcquireWait::default();
    if let Some(wait) = &wait {
        let last = wait.last_finite_bound().unwrap_or(0.0);
        let mut bounded = |value: Option<f64>| match value {
            Some(value) if value.is_infinite() => {
                acquire.above_last_bucket = true;
                last
            }
            Some(value) => value,
            None => 0.0,
        };
        acquire.p50 = bounded(wait.quantile(0.5));
        acquire.p99 = bounded(wait.quantile(0.99));
        acquire.max = bounded(wait.max());
    }
    let use_time = used.map_or(UseTime::default(), |used| UseTime {
        mean: used.mean().unwrap_or(0.0),
        p99: used
            .quantile(0.99)
            .map(|p99| {
                if p99.is_finite() {
                    p99
                } else {
                    used.last_finite_bound().unwrap_or(0.0)
                }
            })
            .unwrap_or(0.0),
    });
    PoolSection {
        name: pool.to_owned(),
        max_size: end.sum(CONNECTION_MAX, Some(pool)).unwrap_or(0.0) as u32,
        checkouts,
        checkouts_per_second: if seconds > 0.0 {
            checkouts as f64 / seconds
        } else {
            0.0
        },
        use_time_seconds: use_time,
        acquire_wait_seconds: acquire,
        timeouts: delta(CONNECTION_TIMEOUTS).unwrap_or(0.0) as u64,
        peak_in_use: 0,
        peak_waiters: 0,
        adaptive_limit: None,
        metrics_read: wait.is_some(),
    }
}

/// The acquisition wait p99 to judge (infinite when above the last
/// bucket); `None` when no checkout was measured.
pub fn acquire_p99_for_verdict(start: &Metrics, end: &Metrics, pool: &str) -> Option<f64> {
    let end = end.histogram(CONNECTION_WAIT_TIME, Some(pool))?;
    let run = match start.histogram(CONNECTION_WAIT_TIME, Some(pool)) {
        Some(start) => end.since(&start),
        None => end,
    };
    run.quantile(0.99)
}

/// Bytes as MiB.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// A count with thin spaces between thousands: `183 456`.
pub fn count(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(' ');
        }
        out.push(digit);
    }
    out
}

impl LoadReport {
    /// The report for people.
    pub fn text(&self) -> String {
        let mut out = String::new();
        self.write_requests(&mut out);
        self.write_pool(&mut out);
        self.write_service(&mut out);
        self.correctness.write(&mut out);
        if let Some(ramp) = &self.ramp {
            ramp.write(&mut out);
        }
        let _ = writeln!(out, "verdicts");
        write_verdicts(&mut out, &self.verdicts, self.passed);
        out
    }

    /// The run and what its requests saw.
    fn write_requests(&self, out: &mut String) {
        let target = match (&self.target.backend, self.target.spawned) {
            (Some(backend), true) => format!("{} ({backend}, spawned)", self.target.url),
            _ => self.target.url.clone(),
        };
        let _ = writeln!(
            out,
            "tidewater-lab load: {} users, think {} mean, for {:.1} s against {target}",
            self.users,
            seconds(self.scenario.think_mean_seconds),
            self.duration_seconds,
        );
        let _ = writeln!(out, "  command       {}", self.command);
        let _ = writeln!(
            out,
            "  requests      {} in {:.1} s: {:.0} per second",
            count(self.requests),
            self.duration_seconds,
            self.throughput_rps
        );
        let l = &self.latency_seconds;
        let _ = writeln!(
            out,
            "  latency       p50 {} · p95 {} · p99 {} · max {}",
            seconds(l.p50),
            seconds(l.p95),
            seconds(l.p99),
            seconds(l.max)
        );
        let _ = writeln!(
            out,
            "  errors        {} ({}) · availability {} ({} unanswered or 5xx)",
            count(self.errors),
            percent(self.error_rate),
            percent(self.availability),
            count(self.unavailable)
        );
        let answers: Vec<String> = self
            .answers
            .iter()
            .map(|(label, n)| format!("{label}: {}", count(*n)))
            .collect();
        let _ = writeln!(out, "  answers       {}", answers.join(" · "));
        let ops: Vec<String> = self
            .operations
            .iter()
            .map(|(name, op)| {
                format!(
                    "{name} {} (p99 {})",
                    count(op.requests),
                    seconds(op.latency_seconds.p99)
                )
            })
            .collect();
        let _ = writeln!(out, "  operations    {}", ops.join(" · "));
    }

    /// The pool: its counters, waits, usage and adaptive limit.
    fn write_pool(&self, out: &mut String) {
        let pool = &self.pool;
        if pool.metrics_read {
            let _ = writeln!(
                out,
                "  pool          {:?}, max {} · {} checkouts ({:.0}/s) · held mean {}, p99 ≤ {} · {} timeouts",
                pool.name,
                pool.max_size,
                count(pool.checkouts),
                pool.checkouts_per_second,
                seconds(pool.use_time_seconds.mean),
                seconds(pool.use_time_seconds.p99),
                count(pool.timeouts)
            );
            let wait = &pool.acquire_wait_seconds;
            let above = if wait.above_last_bucket {
                " (some above the last bucket)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  acquire wait  p50 ≤ {} · p99 ≤ {} · max ≤ {}{above} (upper bounds of /metrics histogram buckets)",
                seconds(wait.p50),
                seconds(wait.p99),
                seconds(wait.max)
            );
        } else {
            let _ = writeln!(out, "  pool          /metrics could not be read");
        }
        let _ = writeln!(
            out,
            "  pool usage    peak {} of {} in use · peak {} waiting (one-second samples)",
            pool.peak_in_use, pool.max_size, pool.peak_waiters
        );
        if let Some(limit) = &pool.adaptive_limit {
            let _ = writeln!(out, "  pool limit    {limit}");
        }
    }

    /// The service's memory and log.
    fn write_service(&self, out: &mut String) {
        match &self.memory {
            Some(memory) => {
                let _ = writeln!(
                    out,
                    "  memory        peak {} (VmHWM) · {} at the end",
                    mib(memory.peak_rss_bytes),
                    mib(memory.final_rss_bytes)
                );
            }
            None => {
                let _ = writeln!(out, "  memory        unknown (not spawned by this run)");
            }
        }
        if let Some(log) = &self.service_log {
            let _ = writeln!(
                out,
                "  service log   {} warnings · {} errors",
                log.warnings, log.errors
            );
        }
    }
}

impl CheckReport {
    /// Its line of the load's text report, and the violations listed.
    fn write(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "  correctness   {}: {} accounts, {} of {} cents found · {} transfers booked, {} acknowledged, {} replays · {} outcomes unknown ({} applied) · {} ledger entries",
            if self.passed { "passed" } else { "FAILED" },
            self.accounts,
            count(u64::try_from(self.money_found).unwrap_or(0)),
            count(u64::try_from(self.money_opened).unwrap_or(0)),
            count(self.transfers_booked),
            count(self.transfers_acknowledged),
            count(self.replays),
            count(self.unknown_outcomes),
            count(self.unknown_applied),
            count(self.ledger_entries)
        );
        for violation in &self.violations {
            let _ = writeln!(out, "    violation: {violation}");
        }
        if self.violation_count > self.violations.len() as u64 {
            let _ = writeln!(
                out,
                "    … {} more",
                self.violation_count - self.violations.len() as u64
            );
        }
    }
}

impl RampReport {
    /// Its table in the load's text report, and its summary.
    fn write(&self, out: &mut String) {
        let _ = writeln!(out, "ramp ({} s per step)", self.step_seconds);
        let _ = writeln!(
            out,
            "  {:>7}  {:>9}  {:>9}  {:>11}  {:>9}  {:>7}  {:>7}  verdict",
            "users", "req/s", "p99", "acquire p99", "errors", "in use", "waiting"
        );
        for step in &self.steps {
            let failed: Vec<&str> = step
                .verdicts
                .iter()
                .filter(|v| !v.passed)
                .map(|v| v.name.as_str())
                .collect();
            let _ = writeln!(
                out,
                "  {:>7}  {:>9.0}  {:>9}  {:>11}  {:>9}  {:>7}  {:>7}  {}",
                step.users,
                step.throughput_rps,
                seconds(step.latency_seconds.p99),
                step.acquire_wait_p99_seconds
                    .map_or("unknown".into(), |p99| format!("≤ {}", seconds(p99))),
                percent(step.error_rate),
                step.peak_in_use,
                step.peak_waiters,
                if step.passed {
                    "pass".to_owned()
                } else {
                    format!("FAIL ({})", failed.join(", "))
                }
            );
        }
        let _ = writeln!(out, "  {}", self.summary());
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A scrape of `/metrics` for the pool `p`: `acquired` checkouts, the
    /// acquisition waits and use times as cumulative bucket counts (at
    /// most 10 µs, 10 ms, 100 ms, any) with their sums, a `max_size` of 50.
    pub(crate) fn scrape(
        acquired: u64,
        wait: [u64; 4],
        wait_sum: f64,
        used: [u64; 4],
        use_sum: f64,
    ) -> Metrics {
        let bounds = ["0.00001", "0.01", "0.1", "+Inf"];
        let mut text = String::new();
        for path in ["direct", "waited"] {
            text += &format!(
                "{ACQUIRED}_total{{pool_name=\"p\",path=\"{path}\"}} {}\n",
                acquired / 2
            );
        }
        for (bound, n) in bounds.iter().zip(wait) {
            text +=
                &format!("{CONNECTION_WAIT_TIME}_bucket{{le=\"{bound}\",pool_name=\"p\"}} {n}\n");
        }
        text += &format!(
            "{CONNECTION_WAIT_TIME}_sum{{pool_name=\"p\"}} {wait_sum}\n{CONNECTION_WAIT_TIME}_count{{pool_name=\"p\"}} {}\n",
            wait[3]
        );
        for (bound, n) in bounds.iter().zip(used) {
            text +=
                &format!("{CONNECTION_USE_TIME}_bucket{{le=\"{bound}\",pool_name=\"p\"}} {n}\n");
        }
        text += &format!(
            "{CONNECTION_USE_TIME}_sum{{pool_name=\"p\"}} {use_sum}\n{CONNECTION_USE_TIME}_count{{pool_name=\"p\"}} {}\n",
            used[3]
        );
        text += &format!("{CONNECTION_MAX}{{pool_name=\"p\"}} 50\n");
        text += &format!("{CONNECTION_TIMEOUTS}_total{{pool_name=\"p\"}} 0\n");
        Metrics::parse(&text).unwrap()
    }

    #[test]
    fn pool_numbers_come_from_the_run_only() {
        let start = scrape(100, [100, 100, 100, 100], 0.0, [0, 100, 100, 100], 0.1);
        // 1000 checkouts in 10 s: 985 without a wait, 3 under 10 ms, 7
        // under 100 ms, 5 above; each held 2 ms on average, 1 over 10 ms.
        let end = scrape(
            1100,
            [1085, 1088, 1095, 1100],
            1.0,
            [0, 1099, 1100, 1100],
            2.1,
        );
        let pool = pool_numbers(&start, &end, "p", 10.0);
        assert!(pool.metrics_read);
        assert_eq!(pool.max_size, 50);
        assert_eq!(pool.checkouts, 1000);
        assert!((pool.checkouts_per_second - 100.0).abs() < 1e-9);
        assert!((pool.use_time_seconds.mean - 0.002).abs() < 1e-9);
        assert_eq!(pool.use_time_seconds.p99, 0.01);
        assert_eq!(pool.acquire_wait_seconds.p50, 0.00001);
        assert_eq!(pool.acquire_wait_seconds.p99, 0.1);
        // The slowest wait was above the last finite bound: reported at
        // that bound, flagged.
        assert_eq!(pool.acquire_wait_seconds.max, 0.1);
        assert!(pool.acquire_wait_seconds.above_last_bucket);
        assert_eq!(acquire_p99_for_verdict(&start, &end, "p"), Some(0.1));
        assert_eq!(acquire_p99_for_verdict(&start, &end, "other"), None);
    }

    #[test]
    fn missing_metrics_are_flagged() {
        let empty = Metrics::default();
        let pool = pool_numbers(&empty, &empty, "p", 1.0);
        assert!(!pool.metrics_read);
        assert_eq!(pool.checkouts, 0);
    }

    #[test]
    fn counts_are_grouped() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1 000");
        assert_eq!(count(183_456_789), "183 456 789");
    }

    #[test]
    fn the_adaptive_limit_range_comes_from_adaptive_samples_only() {
        let sample = |limit: u32, adaptive: bool| PoolSample {
            limit,
            adaptive,
            max_size: 200,
            ..PoolSample::default()
        };
        assert_eq!(LimitRange::of([sample(200, false)]), None);
        let range = LimitRange::of([sample(4, true), sample(12, true), sample(8, true)]);
        assert_eq!(
            range,
            Some(LimitRange {
                min: 4,
                max: 12,
                last: 8
            })
        );
        assert_eq!(
            range.unwrap().to_string(),
            "adaptive limit 8 at the end (4 to 12 during the run)"
        );
    }
}
