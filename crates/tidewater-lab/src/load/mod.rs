//! `tidewater-lab load`: virtual users against the reference service over
//! HTTP, then a report with numbers, a correctness check and verdicts.
//!
//! A run: start the service (or check the URL is on this machine), open
//! the run's accounts, start the users (one phase, or one per step of a
//! ramp), sample the pool (`/api/pools`) and the service's memory every
//! second, scrape `/metrics` before and after each phase, stop the users
//! (at the deadline or when the request budget is spent; every request
//! has a timeout), check correctness, stop the service, and judge.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use tidewater_lab::load::{LoadConfig, run};
//!
//! let config = LoadConfig {
//!     users: 50,
//!     duration: Some(Duration::from_secs(5)),
//!     ..LoadConfig::default() // spawns this executable's `serve` on SQLite
//! };
//! let report = run(&config).await?;
//! println!("{}", report.text());
//! assert!(report.passed);
//! # Ok(()) }
//! ```

pub mod check;
pub mod html;
pub mod observe;
pub mod progress;
pub mod ramp;
pub mod record;
pub mod report;
pub mod slo;
pub mod users;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tidewater_axum::PoolsReport;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::scrape::Metrics;
use crate::service::{Service, ServiceError, SpawnOptions, Target, memory_of};
use check::{Journal, Observed, Opened};
use progress::Progress;
use ramp::{Ramp, RampReport, StepReport};
use record::{Recorder, Stats, Tap};
use report::{
    LoadReport, MemoryReport, OperationReport, PoolSample, ScenarioInfo, SecondSample, TargetInfo,
};
use slo::{Measured, Slos, Verdict};
use users::{Scenario, Shared, Stop};

/// Longest a run bounded only by a request budget may last.
pub const REQUESTS_ONLY_CAP: Duration = Duration::from_secs(3600);
/// Longest the correctness check may take, plus [`CHECK_PER_KEY`] for
/// each idempotency key sent (it reads every transfer).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(600);
/// What each key sent adds to [`CHECK_TIMEOUT`].
pub const CHECK_PER_KEY: Duration = Duration::from_millis(2);
/// Longest the sampler waits for `/api/pools`.
const SAMPLE_TIMEOUT: Duration = Duration::from_millis(800);
/// The largest balance the service accepts (2^53 - 1 cents).
pub const MAX_MONEY: i64 = (1 << 53) - 1;

/// A load run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// The service.
    pub target: Target,
    /// Virtual users (ignored with a ramp).
    pub users: u32,
    /// How long the users run.
    pub duration: Option<Duration>,
    /// How many requests they make in all.
    pub requests: Option<u64>,
    /// Raise the users step by step instead.
    pub ramp: Option<Ramp>,
    /// What each user does.
    pub scenario: Scenario,
    /// Accounts opened for the run.
    pub accounts: u32,
    /// Each one's opening balance, cents.
    pub opening_balance: i64,
    /// Longest a request may take before it counts as a transport error.
    pub request_timeout: Duration,
    /// The objectives.
    pub slos: Slos,
    /// Draw a progress bar (when standard error is a terminal).
    pub progress: bool,
    /// Print nothing on standard error.
    pub quiet: bool,
    /// The command line, for the report.
    pub command: String,
    /// Stop on SIGINT or SIGTERM: drop the users, stop a spawned service
    /// properly, and return [`LoadError::Interrupted`]. Off by default: a
    /// signal handler stays installed for the life of the process, which
    /// is for a command to decide, not for a library.
    pub handle_signals: bool,
}

impl Default for LoadConfig {
    /// 1000 users against a spawned service on SQLite, the default
    /// scenario, 100 accounts of 10 000.00, 15 s request timeout, the
    /// default objectives; no bound (one must be set).
    fn default() -> Self {
        Self {
            target: Target::Spawn(SpawnOptions::default()),
            users: 1000,
            duration: None,
            requests: None,
            ramp: None,
            scenario: Scenario::default(),
            accounts: 100,
            opening_balance: 1_000_000,
            request_timeout: Duration::from_secs(15),
            slos: Slos::default(),
            progress: true,
            quiet: false,
            command: "tidewater-lab load".into(),
            handle_signals: false,
        }
    }
}

impl LoadConfig {
    /// Checks what the flags cannot check one by one.
    ///
    /// # Errors
    /// An unbounded run, a ramp with `--duration` or `--requests`, too few
    /// accounts, or more money than the service can hold.
    pub fn check(&self) -> Result<(), String> {
        match (&self.ramp, self.duration, self.requests) {
            (None, None, None) => {
                return Err(
                    "a load run is always bounded: give --duration, --requests (or both), or --ramp"
                        .into(),
                );
            }
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(
                    "--ramp runs each step for --step-duration; leave out --duration and --requests"
                        .into(),
                );
            }
            _ => {}
        }
        if let Some(ramp) = &self.ramp {
            if ramp.steps.is_empty() {
                return Err("--ramp needs at least one step".into());
            }
        } else if !(1..=ramp::MAX_USERS).contains(&self.users) {
            return Err(format!(
                "--users {}: allowed 1 to {}",
                self.users,
                ramp::MAX_USERS
            ));
        }
        if self.accounts < 2 {
            return Err(format!(
                "--accounts {}: allowed 2 to 100000 (a transfer needs two)",
                self.accounts
            ));
        }
        if self.opening_balance < 1 || self.opening_balance > MAX_MONEY / i64::from(self.accounts) {
            return Err(format!(
                "--opening-balance {}: allowed 1 to {} with {} accounts (their sum must stay below 2^53 cents)",
                self.opening_balance,
                MAX_MONEY / i64::from(self.accounts),
                self.accounts
            ));
        }
        for (flag, value) in [
            ("--resend", self.scenario.resend),
            ("--ledger", self.scenario.ledger),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(format!("{flag} {value}: allowed 0 to 1"));
            }
        }
        Ok(())
    }

    /// The phases: `(users, duration)` each.
    fn phases(&self) -> Vec<(u32, Duration)> {
        match &self.ramp {
            Some(ramp) => ramp
                .steps
                .iter()
                .map(|users| (*users, ramp.step_duration))
                .collect(),
            None => vec![(self.users, self.duration.unwrap_or(REQUESTS_ONLY_CAP))],
        }
    }
}

/// Why a run could not be made (as opposed to a run that failed its
/// verdicts, which is a report).
#[derive(Debug)]
pub enum LoadError {
    /// The options do not make a run.
    Invalid(String),
    /// The service could not be started or reached.
    Service(ServiceError),
    /// The target does not answer like `tidewater serve`.
    Target(String),
    /// SIGINT or SIGTERM arrived: the users were stopped, the spawned
    /// service too, and no report was made.
    Interrupted,
}

impl LoadError {
    /// The process exit code: 2 for bad options (a target off this
    /// machine among them), 3 for a run that could not be made, 130 when
    /// interrupted.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Invalid(_)
            | Self::Service(ServiceError::Refused(_) | ServiceError::Config(_)) => 2,
            Self::Service(ServiceError::Start(_)) | Self::Target(_) => 3,
            Self::Interrupted => 130,
        }
    }
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid(message) | Self::Target(message) => f.write_str(message),
            Self::Service(error) => error.fmt(f),
            Self::Interrupted => f.write_str("interrupted: the run was stopped before its report"),
        }
    }
}

impl std::error::Error for LoadError {}

/// What a caller embedding a load run may add to it (`tidewater-lab drill`,
/// `tidewater-lab soak`): nothing by default.
#[derive(Clone, Default)]
pub struct Hooks {
    /// Sees every request of the users as it ends.
    pub tap: Option<Tap>,
    /// Ends the users early: once stopped, no request starts and each user
    /// ends after its request in flight (within one think time).
    pub stop: Option<StopHandle>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("tap", &self.tap.is_some())
            .field("stop", &self.stop)
            .finish()
    }
}

/// Ends a run's users early (see [`Hooks::stop`]). Clones share it.
///
/// ```
/// let stop = tidewater_lab::load::StopHandle::new();
/// assert!(!stop.is_stopped());
/// stop.clone().stop();
/// assert!(stop.is_stopped());
/// ```
#[derive(Clone, Debug)]
pub struct StopHandle(Arc<AtomicU64>);

impl StopHandle {
    /// A handle not stopped yet.
    pub fn new() -> Self {
        Self(Arc::new(AtomicU64::new(u64::MAX)))
    }

    /// Stops the users: no request starts after this.
    pub fn stop(&self) {
        self.0.store(0, Ordering::Relaxed);
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }
}

impl Default for StopHandle {
    fn default() -> Self {
        Self::new()
    }
}

/// Makes the run `config` describes and returns its report. The report
/// says whether the run passed; an error means no run could be made.
///
/// # Errors
/// Bad options, a service that did not start or a target that is not on
/// this machine or not `tidewater serve`.
pub async fn run(config: &LoadConfig) -> Result<LoadReport, LoadError> {
    run_with(config, Hooks::default()).await
}

/// [`run`], with `hooks`: a tap on every request, a handle that ends the
/// users early. A stop handle is the run's request budget (stopping it
/// spends the budget), so it cannot be combined with `requests`.
///
/// # Errors
/// As [`run`]; also a stop handle with `requests`.
pub async fn run_with(config: &LoadConfig, hooks: Hooks) -> Result<LoadReport, LoadError> {
    config.check().map_err(LoadError::Invalid)?;
    if hooks.stop.is_some() && config.requests.is_some() {
        return Err(LoadError::Invalid(
            "a run ended by a stop handle has no request budget: leave out --requests".into(),
        ));
    }
    raise_open_files_limit();
    let service = Service::start(&config.target)
        .await
        .map_err(LoadError::Service)?;
    let outcome = if config.handle_signals {
        // On SIGINT or SIGTERM the users are dropped and the service is
        // still stopped properly.
        tokio::select! {
            outcome = drive(config, &service, hooks) => outcome,
            () = interrupted() => Err(LoadError::Interrupted),
        }
    } else {
        drive(config, &service, hooks).await
    };
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

/// Waits for SIGINT or SIGTERM (forever, if they cannot be listened for).
async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut interrupt), Ok(mut terminate)) => {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

/// Each user holds a connection to the service: allow as many open files
/// as the hard limit does.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// The pool's name and numbers, from `GET /api/pools` (its first pool,
/// or the one named `pool`).
pub(crate) async fn pool_status(
    client: &reqwest::Client,
    base: &str,
    pool: Option<&str>,
    timeout: Duration,
) -> Result<(String, PoolSample), String> {
    let mut url = reqwest::Url::parse(&format!("{base}/api/pools")).map_err(|e| e.to_string())?;
    // No history: only the numbers now.
    url.query_pairs_mut()
        .append_pair("after", &u64::MAX.to_string());
    if let Some(pool) = pool {
        url.query_pairs_mut().append_pair("pool", pool);
    }
    let response = client
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("status {status}"));
    }
    let report: PoolsReport = response.json().await.map_err(|e| e.to_string())?;
    let Some(first) = report.pools.first() else {
        return Err("no pool in the answer".into());
    };
    let pool = &first.status;
    Ok((
        first.name.clone(),
        PoolSample {
            in_use: pool.in_use,
            idle: pool.idle,
            size: pool.size,
            max_size: pool.max_size,
            limit: pool.limit,
            adaptive: first.sizing.mode == tidewater::SizingMode::Adaptive,
            waiters: pool.waiters,
        },
    ))
}

/// `GET /metrics`, parsed; `None` when it cannot be read.
async fn scrape(client: &reqwest::Client, base: &str) -> Option<Metrics> {
    let response = client
        .get(format!("{base}/metrics"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    Metrics::parse(&response.text().await.ok()?).ok()
}

/// Opens `count` accounts of `opening` cents, a few at a time.
async fn open_accounts(
    client: &reqwest::Client,
    base: &str,
    run_id: &str,
    count: u32,
    opening: i64,
) -> Result<Vec<Opened>, String> {
    let limit = Arc::new(Semaphore::new(8));
    let mut opening_all = JoinSet::new();
    for n in 0..count {
        let (client, base, limit) = (client.clone(), base.to_owned(), limit.clone());
        let name = format!("{run_id}-{n}");
        opening_all.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let mut last = String::new();
            for attempt in 0..4u64 {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(250 * attempt)).await;
                }
                let sent = client
                    .post(format!("{base}/api/accounts"))
                    .json(&json!({ "name": name, "balance": opening }))
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status().as_u16() == 201 => {
                        let body: Value = response.json().await.unwrap_or(Value::Null);
                        return body["id"]
                            .as_i64()
                            .map(|id| Opened { id, opening })
                            .ok_or_else(|| "POST /api/accounts: 201 without an id".to_owned());
                    }
                    Ok(response) if response.status().is_server_error() => {
                        last = format!("status {}", response.status());
                    }
                    Ok(response) => {
                        let status = response.status();
                        let text = response.text().await.unwrap_or_default();
                        return Err(format!("POST /api/accounts: {status}: {text}"));
                    }
                    Err(error) => last = error.to_string(),
                }
            }
            Err(format!("POST /api/accounts: {last}"))
        });
    }
    let mut accounts = Vec::new();
    while let Some(done) = opening_all.join_next().await {
        match done {
            Ok(Ok(account)) => accounts.push(account),
            Ok(Err(error)) => return Err(error),
            Err(error) => return Err(error.to_string()),
        }
    }
    accounts.sort_by_key(|account| account.id);
    Ok(accounts)
}

/// The phase the sampler reports progress for.
struct PhaseView {
    label: String,
    started: Instant,
    /// Progress counts requests (a budget) rather than seconds.
    by_requests: bool,
    requests: u64,
    errors: u64,
}

/// Every second: the recorder's second, the pool (`/api/pools`), the
/// service's memory; and the progress bar.
struct Sampler {
    timeline: Arc<Mutex<Vec<SecondSample>>>,
    users: Arc<AtomicU32>,
    phase: Arc<Mutex<PhaseView>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Drop for Sampler {
    /// A run dropped half-way (interrupted, or its caller gave up) leaves
    /// no sampler behind.
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Sampler {
    fn start(
        shared: Arc<Shared>,
        pool: String,
        pid: Option<u32>,
        started: Instant,
        progress: Arc<Progress>,
    ) -> Self {
        let timeline = Arc::new(Mutex::new(Vec::new()));
        let users = Arc::new(AtomicU32::new(0));
        let phase = Arc::new(Mutex::new(PhaseView {
            label: String::new(),
            started,
            by_requests: false,
            requests: 0,
            errors: 0,
        }));
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn({
            let (timeline, users, phase) = (timeline.clone(), users.clone(), phase.clone());
            async move {
                let second = Duration::from_secs(1);
                let mut ticks = tokio::time::interval_at(started + second, second);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = ticks.tick() => {}
                        _ = &mut stopped => break,
                    }
                    let tally = shared.recorder.take_second();
                    let t = started.elapsed().as_secs_f64();
                    // Within the second, so that the next one is not late.
                    let pool =
                        pool_status(&shared.client, &shared.base, Some(&pool), SAMPLE_TIMEOUT)
                            .await
                            .ok()
                            .map(|(_, sample)| sample);
                    let sample = SecondSample {
                        t,
                        users: users.load(Ordering::Relaxed),
                        requests: tally.requests,
                        errors: tally.errors,
                        unavailable: tally.unavailable,
                        latency_p50: tally.latency.quantile(0.5),
                        latency_p99: tally.latency.quantile(0.99),
                        pool,
                        rss_bytes: pid.and_then(memory_of).map(|memory| memory.rss_bytes),
                    };
                    {
                        let mut view = phase.lock().unwrap_or_else(|e| e.into_inner());
                        view.requests += tally.requests;
                        view.errors += tally.errors;
                        let position = if view.by_requests {
                            view.requests
                        } else {
                            view.started.elapsed().as_secs()
                        };
                        progress.update(
                            position,
                            format!(
                                "{} req/s · {} errors · p99 {}{}",
                                tally.requests,
                                view.errors,
                                slo::seconds(sample.latency_p99),
                                pool.map_or(String::new(), |p| format!(
                                    " · pool {}/{} in use, {} waiting",
                                    p.in_use, p.max_size, p.waiters
                                ))
                            ),
                        );
                    }
                    timeline
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(sample);
                }
            }
        });
        Self {
            timeline,
            users,
            phase,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A new phase for the progress bar.
    fn begin(&self, label: String, users: u32, by_requests: bool) {
        self.users.store(users, Ordering::Relaxed);
        let mut view = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        *view = PhaseView {
            label,
            started: Instant::now(),
            by_requests,
            requests: 0,
            errors: 0,
        };
    }

    fn label(&self) -> String {
        self.phase
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .label
            .clone()
    }

    /// The samples taken so far.
    fn samples(&self) -> Vec<SecondSample> {
        self.timeline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn finish(mut self) -> Vec<SecondSample> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        std::mem::take(&mut *self.timeline.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// One phase's measurements.
struct PhaseResult {
    users: u32,
    seconds: f64,
    /// From and to, seconds since the load started.
    from: f64,
    to: f64,
    stats: Stats,
    start: Option<Metrics>,
    end: Option<Metrics>,
}

/// Runs `users` users for `duration` (or until `budget` is spent).
#[allow(clippy::too_many_arguments)]
async fn run_phase(
    shared: &Arc<Shared>,
    sampler: &Sampler,
    progress: &Progress,
    index: usize,
    users: u32,
    duration: Duration,
    budget: Option<Arc<AtomicU64>>,
    config: &LoadConfig,
    started: Instant,
) -> PhaseResult {
    let start = scrape(&shared.client, &shared.base).await;
    let by_requests = budget.is_some() && config.duration.is_none();
    let label = match &config.ramp {
        Some(ramp) => format!("step {}/{}: {users} users", index + 1, ramp.steps.len()),
        None => format!("{users} users"),
    };
    progress.phase(
        label.clone(),
        match (&budget, by_requests) {
            (Some(budget), true) => budget.load(Ordering::Relaxed),
            _ => duration.as_secs(),
        },
    );
    sampler.begin(label, users, by_requests);
    let from = started.elapsed().as_secs_f64();
    let phase_start = Instant::now();
    let stop = Arc::new(Stop {
        deadline: phase_start + duration,
        budget,
    });
    let mut running = JoinSet::new();
    for user in 0..users {
        running.spawn(users::user(
            shared.clone(),
            stop.clone(),
            index,
            user,
            fastrand::u64(..),
        ));
    }
    // Every request has a timeout and none starts after the deadline: the
    // users are done within one request timeout of it.
    let bound = duration + config.request_timeout + Duration::from_secs(5);
    let finished = tokio::time::timeout(bound, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        running.abort_all();
        progress.note(
            &format!(
                "{}: users still running {} after the deadline were stopped",
                sampler.label(),
                humantime::format_duration(bound - duration)
            ),
            config.quiet,
        );
    }
    let seconds = phase_start.elapsed().as_secs_f64();
    sampler.users.store(0, Ordering::Relaxed);
    let end = scrape(&shared.client, &shared.base).await;
    PhaseResult {
        users,
        seconds,
        from,
        to: started.elapsed().as_secs_f64(),
        stats: shared.recorder.take_phase(),
        start,
        end,
    }
}

/// The peaks of in-use connections and waiters in the samples between
/// `from` and `to` (seconds; a sample covers the second before it).
fn peaks(timeline: &[SecondSample], from: f64, to: f64) -> (u32, u32) {
    timeline
        .iter()
        .filter(|sample| sample.t > from && sample.t < to + 1.0)
        .filter_map(|sample| sample.pool)
        .fold((0, 0), |(in_use, waiters), pool| {
            (in_use.max(pool.in_use), waiters.max(pool.waiters))
        })
}

/// What the verdicts are judged on, for `stats` between two scrapes.
fn measured(stats: &Stats, start: Option<&Metrics>, end: Option<&Metrics>, pool: &str) -> Measured {
    Measured {
        requests: stats.all.requests,
        error_rate: stats.error_rate(),
        latency_p99: stats.all.latency.quantile(0.99),
        acquire_p99: match (start, end) {
            (Some(start), Some(end)) => report::acquire_p99_for_verdict(start, end, pool),
            _ => None,
        },
    }
}

/// A ramp step's report.
fn step_report(
    result: &PhaseResult,
    timeline: &[SecondSample],
    pool: &str,
    slos: &Slos,
) -> StepReport {
    let stats = &result.stats;
    let measured = measured(stats, result.start.as_ref(), result.end.as_ref(), pool);
    let verdicts = slo::judge(slos, &measured);
    let (peak_in_use, peak_waiters) = peaks(timeline, result.from, result.to);
    StepReport {
        users: result.users,
        duration_seconds: result.seconds,
        requests: stats.all.requests,
        throughput_rps: stats.all.requests as f64 / result.seconds.max(1e-9),
        latency_seconds: stats.all.latency.summary(),
        error_rate: stats.error_rate(),
        availability: stats.availability(),
        acquire_wait_p99_seconds: measured.acquire_p99.filter(|p99| p99.is_finite()),
        peak_in_use,
        peak_waiters,
        passed: verdicts.iter().all(|verdict| verdict.passed),
        verdicts,
    }
}

async fn drive(
    config: &LoadConfig,
    service: &Service,
    hooks: Hooks,
) -> Result<LoadReport, LoadError> {
    let client = reqwest::Client::builder()
        .timeout(config.request_timeout)
        .connect_timeout(config.request_timeout.min(Duration::from_secs(5)))
        .tcp_nodelay(true)
        .build()
        .map_err(|e| LoadError::Target(format!("cannot build the HTTP client: {e}")))?;
    let base = service.base().to_owned();
    let (pool_name, pool_at_start) = pool_status(&client, &base, None, Duration::from_secs(10))
        .await
        .map_err(|e| {
            LoadError::Target(format!(
                "{base} does not answer GET /api/pools like `tidewater serve`: {e}"
            ))
        })?;
    let progress = Arc::new(Progress::new(config.progress && !config.quiet));
    progress.note(
        &format!(
            "tidewater-lab load: {base}{}, pool {pool_name:?} of {}; opening {} accounts",
            service
                .backend()
                .map_or(String::new(), |backend| format!(" ({backend})")),
            pool_at_start.max_size,
            config.accounts
        ),
        config.quiet,
    );
    let run_id = format!("load-{:08x}", fastrand::u32(..));
    let accounts = open_accounts(
        &client,
        &base,
        &run_id,
        config.accounts,
        config.opening_balance,
    )
    .await
    .map_err(|e| LoadError::Target(format!("could not open the run's accounts: {e}")))?;
    let shared = Arc::new(Shared {
        client: client.clone(),
        base: base.clone(),
        accounts: accounts.iter().map(|account| account.id).collect(),
        scenario: config.scenario.clone(),
        run_id,
        recorder: hooks.tap.map_or_else(Recorder::default, Recorder::with_tap),
        journal: Journal::default(),
    });

    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let started = Instant::now();
    let sampler = Sampler::start(
        shared.clone(),
        pool_name.clone(),
        service.pid(),
        started,
        progress.clone(),
    );
    let budget = match hooks.stop {
        Some(stop) => Some(stop.0),
        None => config.requests.map(|n| Arc::new(AtomicU64::new(n))),
    };
    let mut results: Vec<PhaseResult> = Vec::new();
    let mut steps = Vec::new();
    for (index, (users, duration)) in config.phases().into_iter().enumerate() {
        let result = run_phase(
            &shared,
            &sampler,
            &progress,
            index,
            users,
            duration,
            budget.clone(),
            config,
            started,
        )
        .await;
        if config.ramp.is_some() {
            let step = step_report(&result, &sampler.samples(), &pool_name, &config.slos);
            let passed = step.passed;
            progress.note(
                &format!(
                    "step {}: {users} users, {:.0} req/s, p99 {}, acquire p99 {}, errors {}: {}",
                    index + 1,
                    step.throughput_rps,
                    slo::seconds(step.latency_seconds.p99),
                    step.acquire_wait_p99_seconds
                        .map_or("unknown".to_owned(), |p99| format!(
                            "≤ {}",
                            slo::seconds(p99)
                        )),
                    slo::percent(step.error_rate),
                    if passed { "pass" } else { "FAIL" }
                ),
                config.quiet,
            );
            steps.push(step);
            results.push(result);
            if !passed {
                break;
            }
        } else {
            results.push(result);
        }
    }
    let timeline = sampler.finish().await;
    progress.finish();

    progress.note("checking correctness…", config.quiet);
    let journal = shared.journal.snapshot();
    let check_bound = CHECK_TIMEOUT
        + CHECK_PER_KEY.saturating_mul(u32::try_from(journal.len()).unwrap_or(u32::MAX));
    let observed = tokio::time::timeout(
        check_bound,
        observe::observe(&client, &base, &accounts, &journal),
    )
    .await
    .unwrap_or_else(|_| Observed {
        unreadable: vec![format!(
            "the service's state within {}",
            humantime::format_duration(check_bound)
        )],
        ..Observed::default()
    });
    let correctness = check::check(&accounts, &journal, &observed);
    let memory = service.memory().map(|memory| MemoryReport {
        peak_rss_bytes: memory.peak_rss_bytes,
        final_rss_bytes: memory.rss_bytes,
    });

    let mut all = Stats::default();
    for result in &results {
        all.merge(&result.stats);
    }
    let seconds: f64 = results.iter().map(|result| result.seconds).sum();
    let first = results.first().and_then(|result| result.start.as_ref());
    let last = results.last().and_then(|result| result.end.as_ref());
    let mut pool = match (first, last) {
        (Some(first), Some(last)) => report::pool_numbers(first, last, &pool_name, seconds),
        _ => report::PoolSection {
            name: pool_name.clone(),
            ..report::PoolSection::default()
        },
    };
    if pool.max_size == 0 {
        pool.max_size = pool_at_start.max_size;
    }
    (pool.peak_in_use, pool.peak_waiters) = peaks(&timeline, 0.0, f64::INFINITY);
    pool.adaptive_limit = report::LimitRange::of(timeline.iter().filter_map(|s| s.pool));

    let ramp = config
        .ramp
        .as_ref()
        .map(|ramp| RampReport::of(ramp.steps.clone(), ramp.step_duration, steps));
    let mut verdicts: Vec<Verdict> = match &ramp {
        Some(ramp) => vec![Verdict {
            name: "ramp_knee".into(),
            passed: ramp.knee_users.is_some(),
            measured: ramp.knee_users.map(f64::from),
            bound: None,
            text: ramp.summary(),
        }],
        None => slo::judge(&config.slos, &measured(&all, first, last, &pool_name)),
    };
    verdicts.push(slo::correctness(&correctness));

    let operations: BTreeMap<String, OperationReport> = all
        .ops
        .iter()
        .map(|(op, tally)| {
            (
                op.name().to_owned(),
                OperationReport {
                    requests: tally.requests,
                    errors: tally.errors,
                    latency_seconds: tally.latency.summary(),
                },
            )
        })
        .collect();
    let users = results.iter().map(|result| result.users).max().unwrap_or(0);
    Ok(LoadReport {
        command: config.command.clone(),
        started_at,
        target: TargetInfo {
            url: base,
            spawned: service.pid().is_some(),
            backend: service.backend().map(str::to_owned),
        },
        users,
        scenario: ScenarioInfo {
            think_mean_seconds: config.scenario.think.as_secs_f64(),
            resend_probability: config.scenario.resend,
            ledger_probability: config.scenario.ledger,
            accounts: config.accounts,
            opening_balance: config.opening_balance,
            request_budget: config.requests,
        },
        duration_seconds: seconds,
        requests: all.all.requests,
        throughput_rps: if seconds > 0.0 {
            all.all.requests as f64 / seconds
        } else {
            0.0
        },
        latency_seconds: all.all.latency.summary(),
        errors: all.all.errors,
        error_rate: all.error_rate(),
        unavailable: all.all.unavailable,
        availability: all.availability(),
        answers: all.outcomes.clone(),
        operations,
        pool,
        memory,
        service_log: None,
        shutdown: None,
        correctness,
        passed: verdicts.iter().all(|verdict| verdict.passed),
        verdicts,
        ramp,
        timeline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounded() -> LoadConfig {
        LoadConfig {
            duration: Some(Duration::from_secs(1)),
            ..LoadConfig::default()
        }
    }

    #[test]
    fn a_run_is_always_bounded() {
        let error = LoadConfig::default().check().unwrap_err();
        assert!(error.contains("--duration"), "{error}");
        assert!(error.contains("--requests"), "{error}");
        assert!(bounded().check().is_ok());
        let requests = LoadConfig {
            requests: Some(10),
            ..LoadConfig::default()
        };
        assert!(requests.check().is_ok());
        assert_eq!(requests.phases(), [(1000, REQUESTS_ONLY_CAP)]);
    }

    #[test]
    fn a_ramp_has_its_own_bounds() {
        let ramp = Ramp {
            steps: vec![10, 20],
            step_duration: Duration::from_secs(2),
        };
        let config = LoadConfig {
            ramp: Some(ramp.clone()),
            ..LoadConfig::default()
        };
        assert!(config.check().is_ok());
        assert_eq!(
            config.phases(),
            [(10, Duration::from_secs(2)), (20, Duration::from_secs(2))]
        );
        let both = LoadConfig {
            ramp: Some(ramp),
            ..bounded()
        };
        assert!(both.check().unwrap_err().contains("--step-duration"));
    }

    #[test]
    fn bad_settings_name_their_flag_and_range() {
        let few = LoadConfig {
            accounts: 1,
            ..bounded()
        };
        assert!(few.check().unwrap_err().contains("--accounts 1: allowed 2"));
        let rich = LoadConfig {
            opening_balance: MAX_MONEY,
            ..bounded()
        };
        let error = rich.check().unwrap_err();
        assert!(
            error.contains("--opening-balance") && error.contains("allowed 1 to"),
            "{error}"
        );
        let mut odd = bounded();
        odd.scenario.resend = 1.5;
        assert!(
            odd.check()
                .unwrap_err()
                .contains("--resend 1.5: allowed 0 to 1")
        );
        let none = LoadConfig {
            users: 0,
            ..bounded()
        };
        assert!(
            none.check()
                .unwrap_err()
                .contains("--users 0: allowed 1 to 100000")
        );
    }

    /// A ramp step of `users` users as its recorder and its two scrapes
    /// of `/metrics` would have it: 1000 requests of 5 ms, `errors` of
    /// them answered `503`, and 1000 checkouts whose acquisition waits
    /// fall into the buckets of [`report::tests::scrape`] (at most 10 µs,
    /// 10 ms, 100 ms, any) as the cumulative counts `waits`.
    fn step(users: u32, errors: u64, waits: [u64; 4]) -> StepReport {
        let mut stats = Stats::default();
        for n in 0..1000 {
            let outcome = if n < errors {
                record::Outcome::Answered {
                    status: 503,
                    problem: Some("pool-timeout".into()),
                }
            } else {
                record::Outcome::Answered {
                    status: 200,
                    problem: None,
                }
            };
            stats.record(record::Op::ReadAccount, Duration::from_millis(5), &outcome);
        }
        let result = PhaseResult {
            users,
            seconds: 10.0,
            from: 0.0,
            to: 10.0,
            stats,
            start: Some(report::tests::scrape(0, [0; 4], 0.0, [0; 4], 0.0)),
            end: Some(report::tests::scrape(
                1000,
                waits,
                1.0,
                [0, 1000, 1000, 1000],
                5.0,
            )),
        };
        step_report(&result, &[], "p", &Slos::default())
    }

    /// A synthetic saturation curve whose knee is known by construction:
    /// up to 40 users the 99th percentile checkout waits at most 10 ms
    /// (the objective is 100 ms); at 80 users 1.5 % of checkouts wait
    /// longer than 100 ms, so the p99 lies above the objective.
    #[test]
    fn the_knee_of_a_synthetic_saturation_curve_is_where_it_was_built() {
        let steps = vec![
            step(10, 0, [1000, 1000, 1000, 1000]),
            step(20, 0, [990, 1000, 1000, 1000]),
            step(40, 0, [700, 995, 1000, 1000]),
            step(80, 0, [400, 900, 985, 1000]),
            step(160, 0, [100, 500, 800, 1000]),
        ];
        let passed: Vec<bool> = steps.iter().map(|step| step.passed).collect();
        assert_eq!(passed, [true, true, true, false, false], "{steps:#?}");
        assert_eq!(steps[2].acquire_wait_p99_seconds, Some(0.01));
        assert_eq!(
            steps[3].acquire_wait_p99_seconds, None,
            "above the last finite bucket"
        );
        let ramp = RampReport::of(vec![10, 20, 40, 80, 160], Duration::from_secs(10), steps);
        assert_eq!(
            (ramp.knee_users, ramp.broke_at_users),
            (Some(40), Some(80)),
            "{}",
            ramp.summary()
        );

        // The same ramp broken by errors instead, every wait short: 1 in
        // 1000 at 20 users is the 0.1 % objective itself, which passes; 2
        // in 1000 at 40 users is over it.
        let calm = [1000, 1000, 1000, 1000];
        let steps = vec![step(10, 0, calm), step(20, 1, calm), step(40, 2, calm)];
        let ramp = RampReport::of(vec![10, 20, 40], Duration::from_secs(10), steps);
        assert_eq!(
            (ramp.knee_users, ramp.broke_at_users),
            (Some(20), Some(40)),
            "{}",
            ramp.summary()
        );
    }

    #[test]
    fn the_adaptive_limit_range_comes_from_adaptive_samples_only() {
        let sample = |limit: u32, adaptive: bool| PoolSample {
            limit,
            adaptive,
            max_size: 200,
            ..PoolSample::default()
        };
        assert_eq!(report::LimitRange::of([sample(200, false)]), None);
        let range = report::LimitRange::of([sample(4, true), sample(12, true), sample(8, true)]);
        assert_eq!(
            range,
            Some(report::LimitRange {
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

    #[test]
    fn peaks_are_taken_within_the_window() {
        let sample = |t: f64, in_use: u32, waiters: u32| SecondSample {
            t,
            pool: Some(PoolSample {
                in_use,
                waiters,
                max_size: 50,
                ..PoolSample::default()
            }),
            ..SecondSample::default()
        };
        let timeline = [
            sample(1.0, 5, 0),
            sample(2.0, 50, 30),
            sample(3.0, 10, 2),
            SecondSample::default(),
        ];
        assert_eq!(peaks(&timeline, 0.0, f64::INFINITY), (50, 30));
        assert_eq!(peaks(&timeline, 2.0, 2.5), (10, 2));
    }
}
