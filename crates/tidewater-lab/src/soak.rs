//! `tidewater-lab soak`: a long load run against a spawned service, watching
//! for leaks.
//!
//! A soak starts `tidewater serve` (SQLite in a temporary folder unless a
//! database URL is given), runs the load's virtual users against it for
//! the whole duration, and every few seconds samples the service's
//! resident memory (`VmRSS` from `/proc/PID/status`), the pool's
//! checkouts (`tidewater_acquired_total` from `/metrics`) and its
//! connections in use and leak suspects (`/api/pools`). Then:
//!
//! - it fits the memory trend: the least-squares line of RSS against
//!   checkouts over the samples taken while the users ran, leaving out a
//!   warm-up share at the start (caches, allocator arenas and the pool's
//!   connections fill then). Its slope, in bytes per million checkouts,
//!   is what a leak would show: memory that grows with use. The verdict
//!   `memory_trend` passes when it stays below a bound;
//! - once the users have stopped, it polls `/api/pools` (with a deadline)
//!   until every slot is back: no connection in use, no leak suspect
//!   (`slots_returned`), and no leak was detected during the run
//!   (`leaks_detected`);
//! - the load's correctness check (money conserved, every acknowledged
//!   transfer exists exactly once, no key applied twice) must pass, and
//!   the service must stop cleanly on SIGTERM.
//!
//! ```
//! use tidewater_lab::soak::fit;
//!
//! // 1 000 bytes more per 10 000 checkouts: 100 000 bytes per million.
//! let line = fit(&[(0.0, 5e6), (1e4, 5.001e6), (2e4, 5.002e6)]).unwrap();
//! assert!((line.slope * 1e6 - 1e5).abs() < 1e-3);
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tidewater_axum::PoolsReport;
use tokio::sync::watch;

use crate::load::check::CheckReport;
use crate::load::record::{LatencySummary, Tap, Tapped};
use crate::load::report::LoadReport;
use crate::load::slo::{self, Slos, Verdict, percent, seconds};
use crate::load::users::Scenario;
use crate::load::{self, Hooks, LoadConfig, LoadError};
use crate::scrape::Metrics;
use crate::service::{LogSummary, Service, SpawnOptions, StopReport, Target, memory_of};
use tidewater::metric_names::{ACQUIRED, LEAKS_DETECTED};

/// The default bound on memory growth: 32 MiB per million checkouts
/// (about 34 bytes a checkout).
pub const DEFAULT_LEAK_BOUND: f64 = 32.0 * 1024.0 * 1024.0;
/// The default warm-up share left out of the fit.
pub const DEFAULT_WARM_UP: f64 = 0.25;
/// Fewest samples the fit needs.
pub const MIN_FIT_SAMPLES: usize = 5;
/// Fewest checkouts the fit needs between its first and last sample.
pub const MIN_FIT_CHECKOUTS: u64 = 1000;
/// Longest a sample's requests may take.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the end state is polled.
const SETTLE_POLL: Duration = Duration::from_millis(100);

/// A soak run.
#[derive(Clone, Debug)]
pub struct SoakConfig {
    /// How long the users run.
    pub duration: Duration,
    /// Virtual users.
    pub users: u32,
    /// Their mean think time.
    pub think: Duration,
    /// Accounts opened for the run.
    pub accounts: u32,
    /// How often to sample; `None`: a sixtieth of the duration, 1 s to 5 s.
    pub sample_every: Option<Duration>,
    /// The share of the run, from its start, left out of the fit (0 to 0.9).
    pub warm_up: f64,
    /// Most bytes of resident memory the service may gain per million
    /// checkouts.
    pub leak_bound: f64,
    /// Longest to wait, after the users stop, for every slot to be back.
    pub settle_timeout: Duration,
    /// How to start the service.
    pub spawn: SpawnOptions,
    /// Draw the load's progress bar on standard error (when it is a
    /// terminal). The soak's notes are `tracing` events, whatever this
    /// says.
    pub progress: bool,
    /// The command line, for the report.
    pub command: String,
}

impl Default for SoakConfig {
    /// One hour, 50 users thinking 100 ms, 100 accounts, SQLite, the
    /// default bounds.
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(3600),
            users: 50,
            think: Duration::from_millis(100),
            accounts: 100,
            sample_every: None,
            warm_up: DEFAULT_WARM_UP,
            leak_bound: DEFAULT_LEAK_BOUND,
            settle_timeout: Duration::from_secs(30),
            spawn: SpawnOptions::default(),
            progress: true,
            command: "tidewater-lab soak".into(),
        }
    }
}

impl SoakConfig {
    /// The sampling interval: the one given, or a sixtieth of the
    /// duration, at least 1 s and at most 5 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tidewater_lab::soak::SoakConfig;
    ///
    /// let hour = SoakConfig::default();
    /// assert_eq!(hour.interval(), Duration::from_secs(5));
    /// let short = SoakConfig { duration: Duration::from_secs(30), ..SoakConfig::default() };
    /// assert_eq!(short.interval(), Duration::from_secs(1));
    /// ```
    pub fn interval(&self) -> Duration {
        self.sample_every.unwrap_or_else(|| {
            (self.duration / 60).clamp(Duration::from_secs(1), Duration::from_secs(5))
        })
    }

    /// Checks what the flags cannot check one by one.
    ///
    /// # Errors
    /// A warm-up share out of 0 to 0.9, a bound that is not positive, or
    /// a run too short to give the fit [`MIN_FIT_SAMPLES`] samples.
    pub fn check(&self) -> Result<(), String> {
        if !(0.0..=0.9).contains(&self.warm_up) {
            return Err(format!("--warm-up {}: allowed 0 to 0.9", self.warm_up));
        }
        if !(self.leak_bound.is_finite() && self.leak_bound > 0.0) {
            return Err("--leak-bound: must be above 0".into());
        }
        if self.interval().is_zero() {
            return Err("--sample-every: must be above 0".into());
        }
        let fitted = self.duration.mul_f64(1.0 - self.warm_up);
        let samples = fitted.as_secs_f64() / self.interval().as_secs_f64();
        if samples < MIN_FIT_SAMPLES as f64 {
            return Err(format!(
                "--duration {}: after the warm-up ({:.0} %) it leaves about {samples:.0} samples of one every {}; the trend needs at least {MIN_FIT_SAMPLES}: lengthen --duration or lower --sample-every",
                humantime::format_duration(self.duration),
                self.warm_up * 100.0,
                humantime::format_duration(self.interval()),
            ));
        }
        Ok(())
    }
}

/// What the load did, from its report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadSummary {
    /// Requests made by the users.
    pub requests: u64,
    /// Seconds the users ran.
    pub duration_seconds: f64,
    /// Requests per second.
    pub throughput_rps: f64,
    /// Request latency.
    pub latency_seconds: LatencySummary,
    /// Requests in error.
    pub errors: u64,
    /// Errors over requests.
    pub error_rate: f64,
    /// Requests answered without a transport failure or 5xx, over all.
    pub availability: f64,
    /// Answers by status and problem type.
    pub answers: BTreeMap<String, u64>,
    /// Checkouts while the users ran (`tidewater_acquired_total`).
    pub checkouts: u64,
    /// The pool's most connections.
    pub pool_max_size: u32,
}

impl From<&LoadReport> for LoadSummary {
    fn from(report: &LoadReport) -> Self {
        Self {
            requests: report.requests,
            duration_seconds: report.duration_seconds,
            throughput_rps: report.throughput_rps,
            latency_seconds: report.latency_seconds,
            errors: report.errors,
            error_rate: report.error_rate,
            availability: report.availability,
            answers: report.answers.clone(),
            checkouts: report.pool.checkouts,
            pool_max_size: report.pool.max_size,
        }
    }
}

/// One sample of the service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SoakSample {
    /// Seconds since the soak started.
    pub t: f64,
    /// Whether the users were running: taken after their first request
    /// and before the end of the duration (false before, during the
    /// correctness check, and after).
    pub load: bool,
    /// Resident memory (`VmRSS`), bytes.
    pub rss_bytes: Option<u64>,
    /// Checkouts since the service started (`tidewater_acquired_total`).
    pub checkouts: Option<u64>,
    /// Connections in use (`/api/pools`).
    pub in_use: Option<u32>,
    /// Leak suspects listed by `/api/pools`.
    pub leak_suspects: Option<u32>,
    /// Leaks detected since the service started.
    pub leaks_detected: Option<u64>,
}

/// A straight line `y = intercept + slope * x`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Line {
    /// Growth of `y` per unit of `x`.
    pub slope: f64,
    /// `y` at `x = 0`.
    pub intercept: f64,
}

/// The least-squares line through `points` (`(x, y)`); `None` with fewer
/// than two points or when every `x` is the same.
///
/// ```
/// use tidewater_lab::soak::fit;
///
/// let line = fit(&[(1.0, 3.0), (2.0, 5.0), (3.0, 7.0)]).unwrap();
/// assert!((line.slope - 2.0).abs() < 1e-12 && (line.intercept - 1.0).abs() < 1e-12);
/// assert!(fit(&[(1.0, 3.0), (1.0, 5.0)]).is_none());
/// ```
pub fn fit(points: &[(f64, f64)]) -> Option<Line> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut sxx, mut sxy) = (0.0, 0.0);
    for (x, y) in points {
        sxx += (x - mean_x) * (x - mean_x);
        sxy += (x - mean_x) * (y - mean_y);
    }
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    Some(Line {
        slope,
        intercept: mean_y - slope * mean_x,
    })
}

/// The memory trend over the fitted samples.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    /// Seconds since the soak started: the fit's window.
    pub from_seconds: f64,
    /// Its end.
    pub to_seconds: f64,
    /// Samples in it with both memory and checkouts.
    pub samples: usize,
    /// Checkouts between its first and last sample.
    pub checkouts: u64,
    /// Resident memory at its first sample, bytes.
    pub rss_first_bytes: Option<u64>,
    /// At its last sample.
    pub rss_last_bytes: Option<u64>,
    /// The least and most resident memory in it.
    pub rss_min_bytes: Option<u64>,
    /// The most.
    pub rss_max_bytes: Option<u64>,
    /// The fitted slope of RSS against checkouts, bytes per million
    /// checkouts; `null` when it could not be fitted.
    pub bytes_per_million_checkouts: Option<f64>,
    /// The fitted slope of RSS against time, bytes per hour (for
    /// reading only: the verdict is on checkouts).
    pub bytes_per_hour: Option<f64>,
}

impl Trend {
    /// The trend of the samples taken while the users ran, from `from`
    /// to `to` (seconds since the soak started).
    ///
    /// ```
    /// use tidewater_lab::soak::{SoakSample, Trend};
    ///
    /// let samples: Vec<SoakSample> = (0..10)
    ///     .map(|i| SoakSample {
    ///         t: f64::from(i),
    ///         load: true,
    ///         rss_bytes: Some(10_000_000 + 50 * 1000 * i as u64),
    ///         checkouts: Some(1000 * i as u64),
    ///         ..SoakSample::default()
    ///     })
    ///     .collect();
    /// let trend = Trend::of(&samples, 2.0, 9.0);
    /// assert_eq!((trend.samples, trend.checkouts), (8, 7000));
    /// // 50 bytes a checkout.
    /// assert!((trend.bytes_per_million_checkouts.unwrap() - 50e6).abs() < 1.0);
    /// ```
    pub fn of(samples: &[SoakSample], from: f64, to: f64) -> Self {
        let used: Vec<(f64, u64, u64)> = samples
            .iter()
            .filter(|sample| sample.load && sample.t >= from && sample.t <= to)
            .filter_map(|sample| Some((sample.t, sample.checkouts?, sample.rss_bytes?)))
            .collect();
        let by_checkouts: Vec<(f64, f64)> = used
            .iter()
            .map(|&(_, checkouts, rss)| (checkouts as f64, rss as f64))
            .collect();
        let by_time: Vec<(f64, f64)> = used
            .iter()
            .map(|&(t, _, rss)| (t / 3600.0, rss as f64))
            .collect();
        let checkouts = match (used.first(), used.last()) {
            (Some(first), Some(last)) => last.1.saturating_sub(first.1),
            _ => 0,
        };
        Self {
            from_seconds: from,
            to_seconds: to,
            samples: used.len(),
            checkouts,
            rss_first_bytes: used.first().map(|sample| sample.2),
            rss_last_bytes: used.last().map(|sample| sample.2),
            rss_min_bytes: used.iter().map(|sample| sample.2).min(),
            rss_max_bytes: used.iter().map(|sample| sample.2).max(),
            bytes_per_million_checkouts: fit(&by_checkouts).map(|line| line.slope * 1e6),
            bytes_per_hour: fit(&by_time).map(|line| line.slope),
        }
    }

    /// The trend of a soak of `config` whose users started `load_from`
    /// seconds after it: from the end of the warm-up to the end of the
    /// duration.
    fn after_warm_up(config: &SoakConfig, samples: &[SoakSample], load_from: f64) -> Self {
        let duration = config.duration.as_secs_f64();
        Self::of(
            samples,
            load_from + duration * config.warm_up,
            load_from + duration,
        )
    }

    /// The verdict `memory_trend`: enough samples and checkouts to fit,
    /// and a slope of at most `bound` bytes per million checkouts.
    ///
    /// ```
    /// use tidewater_lab::soak::Trend;
    ///
    /// let flat = Trend { samples: 10, checkouts: 50_000, bytes_per_million_checkouts: Some(1e6), ..Trend::default() };
    /// assert!(flat.verdict(32e6).passed);
    /// let leaking = Trend { bytes_per_million_checkouts: Some(100e6), ..flat.clone() };
    /// assert!(!leaking.verdict(32e6).passed);
    /// let short = Trend { checkouts: 10, ..flat };
    /// assert!(!short.verdict(32e6).passed, "too few checkouts is no proof");
    /// ```
    pub fn verdict(&self, bound: f64) -> Verdict {
        let name = "memory_trend".to_owned();
        if self.samples < MIN_FIT_SAMPLES || self.checkouts < MIN_FIT_CHECKOUTS {
            return Verdict {
                name,
                passed: false,
                measured: self.bytes_per_million_checkouts,
                bound: Some(bound),
                text: format!(
                    "inconclusive: {} samples and {} checkouts after the warm-up; the fit needs at least {MIN_FIT_SAMPLES} samples and {MIN_FIT_CHECKOUTS} checkouts",
                    self.samples, self.checkouts
                ),
            };
        }
        match self.bytes_per_million_checkouts {
            Some(slope) => Verdict {
                name,
                passed: slope <= bound,
                measured: Some(slope),
                bound: Some(bound),
                text: format!(
                    "resident memory {} per million checkouts (least squares over {} samples, {} checkouts), bound {}",
                    signed_mib(slope),
                    self.samples,
                    self.checkouts,
                    mib(bound)
                ),
            },
            None => Verdict {
                name,
                passed: false,
                measured: None,
                bound: Some(bound),
                text: "inconclusive: the checkouts did not change between samples".into(),
            },
        }
    }
}

/// The pool once the users had stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EndState {
    /// `/api/pools` answered.
    pub read: bool,
    /// Connections in use at the last poll.
    pub in_use: u32,
    /// Leak suspects at the last poll.
    pub leak_suspects: u32,
    /// Seconds from the end of the load (its correctness check included)
    /// until every slot was back; `null` when they were not within the
    /// deadline.
    pub settled_after_seconds: Option<f64>,
    /// The deadline, seconds.
    pub deadline_seconds: f64,
}

impl EndState {
    /// The verdict `slots_returned`.
    pub fn verdict(&self) -> Verdict {
        let passed = self.read && self.settled_after_seconds.is_some();
        let text = match (self.read, self.settled_after_seconds) {
            (false, _) => "/api/pools could not be read after the load".to_owned(),
            (true, Some(after)) => format!(
                "0 connections in use and no leak suspect {} after the load",
                seconds(after)
            ),
            (true, None) => format!(
                "{} connection(s) still in use and {} leak suspect(s) {} after the load",
                self.in_use,
                self.leak_suspects,
                seconds(self.deadline_seconds)
            ),
        };
        Verdict {
            name: "slots_returned".into(),
            passed,
            measured: Some(f64::from(self.in_use)),
            bound: Some(0.0),
            text,
        }
    }
}

/// The report of a soak, as `--json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SoakReport {
    /// The command line that made it.
    pub command: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// The service's base URL.
    pub url: String,
    /// Its database kind.
    pub backend: Option<String>,
    /// The duration asked for, seconds.
    pub duration_seconds: f64,
    /// Virtual users.
    pub users: u32,
    /// Their mean think time, seconds.
    pub think_mean_seconds: f64,
    /// Seconds between samples.
    pub sample_every_seconds: f64,
    /// The share left out of the fit.
    pub warm_up_share: f64,
    /// The bound on growth, bytes per million checkouts.
    pub leak_bound_bytes_per_million: f64,
    /// What the load did.
    pub load: LoadSummary,
    /// The memory trend.
    pub trend: Trend,
    /// The most resident memory the service ever had (`VmHWM`), bytes.
    pub peak_rss_bytes: Option<u64>,
    /// The pool once the users had stopped.
    pub end_state: EndState,
    /// Leaks the pool detected during the soak.
    pub leaks_detected: Option<u64>,
    /// The load's correctness check.
    pub correctness: CheckReport,
    /// What the service logged.
    pub service_log: Option<LogSummary>,
    /// How it stopped.
    pub shutdown: Option<StopReport>,
    /// Every verdict.
    pub verdicts: Vec<Verdict>,
    /// Every verdict passed.
    pub passed: bool,
    /// Every sample.
    pub samples: Vec<SoakSample>,
}

/// Runs the soak `config` describes and returns its report; an error
/// means no soak could be made.
///
/// # Errors
/// Bad options, a service that did not start, or an interrupted run.
pub async fn run(config: &SoakConfig) -> Result<SoakReport, LoadError> {
    config.check().map_err(LoadError::Invalid)?;
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let service = Service::start(&Target::Spawn(config.spawn.clone())).await?;
    let outcome = soak(config, &service, started_at).await;
    let log = service.log();
    let stop = service.stop().await;
    let mut report = outcome?;
    report.service_log = log;
    if let Some(stop) = &stop {
        report.verdicts.push(slo::clean_shutdown(stop));
    }
    report.shutdown = stop;
    report.passed = report.verdicts.iter().all(|verdict| verdict.passed);
    Ok(report)
}

/// The soak against `service`, up to its report (without the service's
/// log and shutdown, which come once it is stopped).
async fn soak(
    config: &SoakConfig,
    service: &Service,
    started_at: String,
) -> Result<SoakReport, LoadError> {
    let probe = Probe::of(service)?;
    let interval = config.interval();
    tracing::info!(
        "{} ({}), {} users for {}, sampling every {}",
        probe.base,
        service.backend().unwrap_or("?"),
        config.users,
        humantime::format_duration(config.duration),
        humantime::format_duration(interval)
    );
    // The users' first request: the load's clock.
    let first = Arc::new(OnceLock::new());
    let sampling = Sampling::start(
        probe.clone(),
        interval,
        Window {
            first: first.clone(),
            duration: config.duration,
        },
    );
    let loaded = load::run_with(
        &load_config(config, &probe.base),
        Hooks {
            tap: Some(first_request(&first)),
            stop: None,
        },
    )
    .await;
    let load_done = Instant::now();
    // Samples from here on are after the load.
    let mut samples = sampling.stop().await;
    let report = loaded?;
    tracing::info!("the users stopped; waiting for every slot to be back");
    let end_state = settle(&probe.client, &probe.base, config.settle_timeout, load_done).await;
    let last = probe.sample(false).await;
    samples.push(last);
    // The users ran from their first request for the duration.
    let load_from = first.get().map_or(0.0, |first: &Instant| {
        first.saturating_duration_since(probe.started).as_secs_f64()
    });
    let trend = Trend::after_warm_up(config, &samples, load_from);
    let leaks_detected = leaks_during(&samples);
    let verdicts = vec![
        trend.verdict(config.leak_bound),
        end_state.verdict(),
        leaks_verdict(leaks_detected),
        slo::correctness(&report.correctness),
        requests_verdict(&report),
    ];
    Ok(SoakReport {
        command: config.command.clone(),
        started_at,
        url: probe.base,
        backend: service.backend().map(str::to_owned),
        duration_seconds: config.duration.as_secs_f64(),
        users: config.users,
        think_mean_seconds: config.think.as_secs_f64(),
        sample_every_seconds: interval.as_secs_f64(),
        warm_up_share: config.warm_up,
        leak_bound_bytes_per_million: config.leak_bound,
        load: LoadSummary::from(&report),
        trend,
        peak_rss_bytes: service.memory().map(|memory| memory.peak_rss_bytes),
        end_state,
        leaks_detected,
        correctness: report.correctness,
        service_log: None,
        shutdown: None,
        passed: verdicts.iter().all(|verdict| verdict.passed),
        verdicts,
        samples,
    })
}

/// The load a soak runs against the service at `base`: its users for its
/// duration.
fn load_config(config: &SoakConfig, base: &str) -> LoadConfig {
    LoadConfig {
        target: Target::Url(base.to_owned()),
        users: config.users,
        duration: Some(config.duration),
        requests: None,
        ramp: None,
        scenario: Scenario {
            think: config.think,
            ..Scenario::default()
        },
        accounts: config.accounts,
        slos: Slos::default(),
        progress: config.progress,
        command: config.command.clone(),
        ..LoadConfig::default()
    }
}

/// A tap that keeps when the users' first request started in `first`.
fn first_request(first: &Arc<OnceLock<Instant>>) -> Tap {
    let first = first.clone();
    Arc::new(move |tapped: Tapped<'_>| {
        first.get_or_init(|| tapped.start);
    })
}

/// The leaks the pool detected between the first of `samples` that read
/// its counter and the last sample; `None` when either did not.
fn leaks_during(samples: &[SoakSample]) -> Option<u64> {
    let first = samples.iter().find_map(|sample| sample.leaks_detected)?;
    let last = samples.last()?.leaks_detected?;
    Some(last.saturating_sub(first))
}

/// The verdict `leaks_detected`: the pool detected no leak during the
/// soak (`None`: `/metrics` could not be read).
fn leaks_verdict(leaks_detected: Option<u64>) -> Verdict {
    Verdict {
        name: "leaks_detected".into(),
        passed: leaks_detected == Some(0),
        measured: leaks_detected.map(|n| n as f64),
        bound: Some(0.0),
        text: match leaks_detected {
            Some(n) => format!("{n} connection(s) held past the leak threshold during the soak"),
            None => "unknown: /metrics could not be read".into(),
        },
    }
}

/// The verdict `requests`: the users made requests.
fn requests_verdict(report: &LoadReport) -> Verdict {
    Verdict {
        name: "requests".into(),
        passed: report.requests > 0,
        measured: Some(report.requests as f64),
        bound: None,
        text: format!(
            "{} requests, error rate {}",
            report.requests,
            percent(report.error_rate)
        ),
    }
}

/// The sampler's task and its samples.
struct Sampling {
    samples: Arc<Mutex<Vec<SoakSample>>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampling {
    /// Samples with `probe` every `interval`, each marked as taken while
    /// the users of `window` ran or not.
    fn start(probe: Probe, interval: Duration, window: Window) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(sample_every(
            probe,
            interval,
            window,
            samples.clone(),
            stopped,
        ));
        Self {
            samples,
            stop,
            task,
        }
    }

    /// Stops sampling and returns the samples.
    async fn stop(self) -> Vec<SoakSample> {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Where and how to sample the service.
#[derive(Clone)]
struct Probe {
    client: reqwest::Client,
    base: String,
    pid: Option<u32>,
    /// When the soak started: samples are timed from it.
    started: Instant,
}

impl Probe {
    /// Sampling `service` from now on.
    fn of(service: &Service) -> Result<Self, LoadError> {
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(SAMPLE_TIMEOUT)
                .build()
                .map_err(LoadError::Client)?,
            base: service.base().to_owned(),
            pid: service.pid(),
            started: Instant::now(),
        })
    }

    /// One sample: memory, `/metrics`, `/api/pools`.
    async fn sample(&self, load: bool) -> SoakSample {
        let rss_bytes = self.pid.and_then(memory_of).map(|memory| memory.rss_bytes);
        let metrics = metrics(&self.client, &self.base).await;
        let counter = |name: &str| {
            metrics
                .as_ref()
                .and_then(|metrics| metrics.counter(name, None))
                .map(|value| value as u64)
        };
        let pool = pool(&self.client, &self.base).await;
        SoakSample {
            t: self.started.elapsed().as_secs_f64(),
            load,
            rss_bytes,
            checkouts: counter(ACQUIRED),
            in_use: pool.map(|pool| pool.0),
            leak_suspects: pool.map(|pool| pool.1),
            leaks_detected: counter(LEAKS_DETECTED),
        }
    }
}

/// When the users run: from their first request, for the duration.
struct Window {
    first: Arc<OnceLock<Instant>>,
    duration: Duration,
}

impl Window {
    /// Whether the users are running now.
    fn running(&self) -> bool {
        self.first
            .get()
            .is_some_and(|first| first.elapsed() < self.duration)
    }
}

/// Samples every `interval` into `samples` until `stop` turns true.
async fn sample_every(
    probe: Probe,
    interval: Duration,
    window: Window,
    samples: Arc<Mutex<Vec<SoakSample>>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        // Judged before the sample's requests: a sample begun while the
        // users ran belongs to the run.
        let load = window.running();
        let sample = probe.sample(load).await;
        samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(sample);
    }
}

/// `GET /metrics`, parsed.
async fn metrics(client: &reqwest::Client, base: &str) -> Option<Metrics> {
    let response = client.get(format!("{base}/metrics")).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    Metrics::parse(&response.text().await.ok()?).ok()
}

/// The first pool's connections in use and leak suspects, from
/// `GET /api/pools`.
async fn pool(client: &reqwest::Client, base: &str) -> Option<(u32, u32)> {
    let response = client
        .get(format!("{base}/api/pools?after={}", u64::MAX))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let report: PoolsReport = response.json().await.ok()?;
    let first = report.pools.first()?;
    let suspects = u32::try_from(first.leak_suspects.len()).ok()?;
    Some((first.status.in_use, suspects))
}

/// Polls `/api/pools` until no connection is in use and no leak is
/// suspected, at most `deadline` after `since`.
async fn settle(
    client: &reqwest::Client,
    base: &str,
    deadline: Duration,
    since: Instant,
) -> EndState {
    let mut state = EndState {
        deadline_seconds: deadline.as_secs_f64(),
        ..EndState::default()
    };
    let until = since + deadline;
    loop {
        if let Some((in_use, suspects)) = pool(client, base).await {
            state.read = true;
            state.in_use = in_use;
            state.leak_suspects = suspects;
            if in_use == 0 && suspects == 0 {
                state.settled_after_seconds = Some(since.elapsed().as_secs_f64());
                return state;
            }
        }
        if Instant::now() >= until {
            return state;
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

/// Bytes as MiB: `12.3 MiB`.
fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / f64::from(1 << 20))
}

/// Bytes as signed MiB: `+1.20 MiB`, `-0.31 MiB`.
fn signed_mib(bytes: f64) -> String {
    format!("{:+.2} MiB", bytes / f64::from(1 << 20))
}

impl SoakReport {
    /// The report for people.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "tidewater-lab soak: {} users, think {} mean, for {} against {} ({})",
            self.users,
            seconds(self.think_mean_seconds),
            humantime::format_duration(Duration::from_secs_f64(self.duration_seconds.round())),
            self.url,
            self.backend.as_deref().unwrap_or("?"),
        );
        let _ = writeln!(out, "  command       {}", self.command);
        let load = &self.load;
        let _ = writeln!(
            out,
            "  load          {} requests ({:.0}/s) · p99 {} · errors {} ({}) · {} checkouts",
            load.requests,
            load.throughput_rps,
            seconds(load.latency_seconds.p99),
            load.errors,
            percent(load.error_rate),
            load.checkouts
        );
        let trend = &self.trend;
        let rss = |bytes: Option<u64>| bytes.map_or("?".to_owned(), |b| mib(b as f64));
        let _ = writeln!(
            out,
            "  memory        {} → {} (min {}, max {}) from {:.0} s to {:.0} s · peak {} (VmHWM)",
            rss(trend.rss_first_bytes),
            rss(trend.rss_last_bytes),
            rss(trend.rss_min_bytes),
            rss(trend.rss_max_bytes),
            trend.from_seconds,
            trend.to_seconds,
            rss(self.peak_rss_bytes),
        );
        let _ = writeln!(
            out,
            "  trend         {} per million checkouts · {} per hour (fit over {} samples, {} checkouts, first {:.0} % left out)",
            trend
                .bytes_per_million_checkouts
                .map_or("?".to_owned(), signed_mib),
            trend.bytes_per_hour.map_or("?".to_owned(), signed_mib),
            trend.samples,
            trend.checkouts,
            self.warm_up_share * 100.0
        );
        let end = &self.end_state;
        let _ = writeln!(
            out,
            "  after         {} in use · {} leak suspects · {} leaks detected during the soak",
            end.in_use,
            end.leak_suspects,
            self.leaks_detected
                .map_or("?".to_owned(), |n| n.to_string())
        );
        let _ = writeln!(out, "  samples (t, RSS, checkouts, in use):");
        let step = (self.samples.len() / 12).max(1);
        for (index, sample) in self.samples.iter().enumerate() {
            if index % step != 0 && index + 1 != self.samples.len() {
                continue;
            }
            let _ = writeln!(
                out,
                "    {:>7.1} s  {:>10}  {:>10}  {:>3}{}",
                sample.t,
                rss(sample.rss_bytes),
                sample.checkouts.map_or("?".to_owned(), |n| n.to_string()),
                sample.in_use.map_or("?".to_owned(), |n| n.to_string()),
                if sample.load {
                    ""
                } else {
                    "  (after the load)"
                }
            );
        }
        slo::write_verdicts(&mut out, &self.verdicts, self.passed);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: f64, rss: u64, checkouts: u64) -> SoakSample {
        SoakSample {
            t,
            load: true,
            rss_bytes: Some(rss),
            checkouts: Some(checkouts),
            in_use: Some(3),
            leak_suspects: Some(0),
            leaks_detected: Some(0),
        }
    }

    #[test]
    fn the_fit_leaves_out_the_warm_up_and_the_time_after_the_load() {
        // Memory climbs 40 MB during the warm-up, then stays flat up to
        // noise; after the load it would jump (the check's reads).
        let mut samples = Vec::new();
        for i in 0..5u64 {
            samples.push(sample(i as f64, 10_000_000 + 10_000_000 * i, 1000 * i));
        }
        for i in 5..20u64 {
            let noise = if i % 2 == 0 { 20_000 } else { 0 };
            samples.push(sample(i as f64, 50_000_000 + noise, 1000 * i));
        }
        samples.push(SoakSample {
            load: false,
            ..sample(20.0, 90_000_000, 30_000)
        });
        let trend = Trend::of(&samples, 5.0, 20.0);
        assert_eq!(trend.samples, 15);
        assert_eq!(trend.checkouts, 14_000);
        let slope = trend.bytes_per_million_checkouts.unwrap();
        assert!(slope.abs() < 1e6, "{slope}");
        assert!(trend.verdict(DEFAULT_LEAK_BOUND).passed);
        // With the warm-up in, the same samples look like a leak.
        let all = Trend::of(&samples, 0.0, 20.0);
        assert!(!all.verdict(DEFAULT_LEAK_BOUND).passed, "{all:?}");
    }

    #[test]
    fn a_steady_leak_fails_the_trend() {
        // 100 bytes a checkout.
        let samples: Vec<_> = (0..30u64)
            .map(|i| sample(i as f64, 20_000_000 + 100 * 2000 * i, 2000 * i))
            .collect();
        let trend = Trend::of(&samples, 0.0, 30.0);
        let verdict = trend.verdict(DEFAULT_LEAK_BOUND);
        assert!(!verdict.passed);
        assert!((verdict.measured.unwrap() - 100e6).abs() < 1.0);
        assert!(verdict.text.contains("+95.37 MiB"), "{}", verdict.text);
    }

    #[test]
    fn samples_missing_numbers_are_left_out() {
        let mut samples: Vec<_> = (0..6u64)
            .map(|i| sample(i as f64, 1000, 1000 * i))
            .collect();
        samples[2].rss_bytes = None;
        samples[3].checkouts = None;
        let trend = Trend::of(&samples, 0.0, 10.0);
        assert_eq!(trend.samples, 4);
        assert!(
            !trend.verdict(DEFAULT_LEAK_BOUND).passed,
            "4 samples are too few"
        );
    }

    #[test]
    fn the_end_state_needs_every_slot_back() {
        let back = EndState {
            read: true,
            settled_after_seconds: Some(0.2),
            deadline_seconds: 30.0,
            ..EndState::default()
        };
        assert!(back.verdict().passed);
        let held = EndState {
            in_use: 2,
            settled_after_seconds: None,
            ..back
        };
        let verdict = held.verdict();
        assert!(!verdict.passed);
        assert!(
            verdict.text.contains("2 connection(s) still in use"),
            "{}",
            verdict.text
        );
        assert!(!EndState::default().verdict().passed);
    }

    #[test]
    fn a_soak_too_short_for_the_fit_is_refused() {
        let short = SoakConfig {
            duration: Duration::from_secs(5),
            ..SoakConfig::default()
        };
        let error = short.check().unwrap_err();
        assert!(error.contains("at least 5"), "{error}");
        let fine = SoakConfig {
            duration: Duration::from_secs(20),
            ..SoakConfig::default()
        };
        assert!(fine.check().is_ok());
        let odd = SoakConfig {
            warm_up: 0.95,
            ..SoakConfig::default()
        };
        assert!(odd.check().unwrap_err().contains("--warm-up"));
    }
}
