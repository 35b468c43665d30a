//! `tidewater-lab drill`: the load's virtual users against the reference
//! service while a private PostgreSQL is broken on a schedule, and a
//! report of what the users saw, phase by phase, with verdicts.
//!
//! A drill:
//!
//! 1. creates a private PostgreSQL cluster (the testkit's [`PgCluster`]:
//!    `initdb` in a temporary folder, a free port of 127.0.0.1, run as the
//!    `postgres` system user; never the machine's shared server) with a
//!    small `max_connections`, an ordinary role and a database it owns;
//! 2. starts `tidewater serve` on it (a free loopback port), as the
//!    ordinary role, so that the slots PostgreSQL reserves for superusers
//!    stay out of its reach when the fill fault takes the others;
//! 3. runs the load's users against it ([`load::run_with`]), every request
//!    also recorded with its start, end and outcome in a
//!    [`PhaseRecorder`];
//! 4. once the first request is in, runs the fault [`Schedule`]: a calm
//!    baseline, then each fault in its own phase (inject, hold, restore,
//!    wait for the first success, then a calm stretch);
//! 5. stops the users, lets the load run its correctness check, stops the
//!    service (SIGTERM) and the cluster.
//!
//! While the schedule runs, the service's `/api/pools` (its first pool) is
//! read every [`POOL_EVERY`]: each phase reports the most connections in
//! use it saw and, when the pool's sizing is adaptive, the lowest, highest
//! and last limit ([`PhasePool`]).
//!
//! The verdicts: every request either succeeded or was answered `503`
//! with a problem type naming the cause (`answers`: no 500, no other
//! status, no transport error), no request took longer than the service's
//! request deadline plus a margin (`deadline`), after each fault the
//! first success came within the recovery bound of the database's return
//! (`recovery`), every phase saw requests (`requests`), the correctness
//! check passed (`correctness`) and the service stopped cleanly
//! (`clean_shutdown`).
//!
//! ```
//! use tidewater_lab::drill::DrillConfig;
//! use tidewater_lab::faults::Fault;
//!
//! let config = DrillConfig::default();
//! assert_eq!(config.faults, Fault::ALL);
//! assert!(config.check().is_ok());
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tidewater_testkit::PgCluster;

use crate::faults::{
    Fault, FaultError, HOG_SESSIONS, Outcome, Phase, PhaseRecorder, PhaseStats, Schedule,
};
use crate::load::check::CheckReport;
use crate::load::record::{Class, Tap, Tapped, classify};
use crate::load::report::PoolSample;
use crate::load::slo::{self, Slos, Verdict, seconds};
use crate::load::users::Scenario;
use crate::load::{self, Hooks, LoadConfig, LoadError, StopHandle};
use crate::service::{LogSummary, Service, ServiceError, SpawnOptions, StopReport, Target};
use crate::soak::LoadSummary;

/// The role the service logs in as: an ordinary one, without the slots
/// reserved for superusers.
pub const ROLE: &str = "tidewater_drill";
/// Its password.
const PASSWORD: &str = "tidewater_drill";
/// The database the service uses, owned by [`ROLE`].
pub const DATABASE: &str = "bank";
/// Longest to wait for the users' first request (the accounts are
/// opened before it).
const FIRST_REQUEST_DEADLINE: Duration = Duration::from_secs(120);
/// How long the load may run at most: far beyond any schedule; the drill
/// stops it when the schedule is over.
const LOAD_CAP: Duration = Duration::from_secs(3600);
/// How often the drill reads the pool (`/api/pools`).
pub const POOL_EVERY: Duration = Duration::from_millis(250);
/// Longest it waits for one answer of `/api/pools`.
const POOL_TIMEOUT: Duration = Duration::from_secs(1);

/// A drill.
#[derive(Clone, Debug)]
pub struct DrillConfig {
    /// The faults, in order.
    pub faults: Vec<Fault>,
    /// How long each fault that lasts (crash, hang, fill, CPU hog) holds.
    pub hold: Duration,
    /// The calm baseline before the first fault, and the calm stretch
    /// kept after each recovery.
    pub phase: Duration,
    /// Virtual users.
    pub users: u32,
    /// Their mean think time.
    pub think: Duration,
    /// Accounts opened for the run.
    pub accounts: u32,
    /// The service's request deadline (`request_timeout`), which every
    /// answer must meet.
    pub request_timeout: Duration,
    /// What an answer may take beyond the deadline (the answer's way back,
    /// scheduling on a busy machine).
    pub margin: Duration,
    /// Most time from the database's return to the first success.
    pub recovery_bound: Duration,
    /// Longest a phase waits for its first success before going on.
    pub recovery_deadline: Duration,
    /// The cluster's `max_connections`.
    pub max_connections: u32,
    /// The service's `pool.max_size`.
    pub max_size: u32,
    /// More keys of the service's configuration (`KEY=VALUE`).
    pub settings: Vec<String>,
    /// The `tidewater` binary the service runs.
    pub exe: std::path::PathBuf,
    /// The command line, for the report.
    pub command: String,
}

impl Default for DrillConfig {
    /// Every fault, held 3 s, 2 s calm phases, 50 users thinking 100 ms,
    /// the service's default 10 s deadline with a 1 s margin, a 5 s
    /// recovery bound, `max_connections` 20 and a pool of 10.
    fn default() -> Self {
        Self {
            faults: Fault::ALL.to_vec(),
            hold: Duration::from_secs(3),
            phase: Duration::from_secs(2),
            users: 50,
            think: Duration::from_millis(100),
            accounts: 20,
            request_timeout: Duration::from_secs(10),
            margin: Duration::from_secs(1),
            recovery_bound: Duration::from_secs(5),
            recovery_deadline: Duration::from_secs(30),
            max_connections: 20,
            max_size: 10,
            settings: Vec::new(),
            exe: SpawnOptions::default().exe,
            command: "tidewater-lab drill".into(),
        }
    }
}

impl DrillConfig {
    /// Checks what the flags cannot check one by one.
    ///
    /// # Errors
    /// No fault, a pool that does not fit the server (beside the CPU
    /// hog's sessions, when it runs), or a recovery deadline below the
    /// bound.
    pub fn check(&self) -> Result<(), String> {
        if self.faults.is_empty() {
            return Err("--faults: name at least one fault".into());
        }
        // Three slots are reserved for superusers; the drill's own
        // sessions (the fill fault's side client among them) need one.
        if self.max_connections < 8 || self.max_size.saturating_add(4) > self.max_connections {
            return Err(format!(
                "--max-size {} with --max-connections {}: the pool needs max_size + 4 <= max_connections (3 slots are reserved for superusers, one for the drill), and max_connections at least 8",
                self.max_size, self.max_connections
            ));
        }
        // The CPU hog's sessions and its watcher are superusers beside a
        // full pool.
        let hog = u32::try_from(HOG_SESSIONS + 1).unwrap_or(u32::MAX);
        if self.faults.contains(&Fault::CpuHog)
            && self.max_size.saturating_add(hog) > self.max_connections
        {
            return Err(format!(
                "--max-size {} with --max-connections {}: cpu-hog needs max_size + {hog} <= max_connections ({HOG_SESSIONS} CPU-bound sessions and one watching them)",
                self.max_size, self.max_connections
            ));
        }
        if self.recovery_deadline < self.recovery_bound {
            return Err("the recovery deadline must not be below --recovery-bound".into());
        }
        if self.accounts < 2 {
            return Err(format!("--accounts {}: at least 2", self.accounts));
        }
        Ok(())
    }

    /// The schedule the drill runs.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            faults: self.faults.clone(),
            hold: self.hold,
            baseline: self.phase,
            settle: self.phase,
            recovery_deadline: self.recovery_deadline,
        }
    }
}

/// Why no drill could be made (as opposed to a drill that failed its
/// verdicts, which is a report). The underlying error, where there is
/// one, is the [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DrillError {
    /// The options do not make a drill.
    #[error("{0}")]
    Invalid(String),
    /// The private PostgreSQL could not be created or set up (PostgreSQL
    /// not installed, no `postgres` user to run it as).
    #[error(
        "cannot set up the private PostgreSQL (it needs the PostgreSQL programs under /usr/lib/postgresql/*/bin or $TIDEWATER_PG_BIN)"
    )]
    Cluster(#[source] io::Error),
    /// The service could not be started on it.
    #[error("cannot use the service")]
    Service(#[source] ServiceError),
    /// The load could not run, or was interrupted.
    #[error("the load failed")]
    Load(#[source] LoadError),
    /// The load's task ended without a result (it panicked).
    #[error("the load's task failed")]
    LoadTask(#[source] tokio::task::JoinError),
    /// The users made no request within this bound (the accounts are
    /// opened before their first).
    #[error("the users made no request within {}", humantime::format_duration(*.0))]
    NoRequest(Duration),
    /// The load ended on its own before the schedule did.
    #[error("the load ended before the schedule")]
    EndedEarly,
    /// A fault could not be injected.
    #[error("a fault could not be injected")]
    Fault(#[source] FaultError),
}

impl DrillError {
    /// The process exit code: 2 for bad options, 130 when interrupted, 3
    /// otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Invalid(_) => 2,
            Self::Load(error) => error.exit_code(),
            Self::Service(error) => error.exit_code(),
            Self::Cluster(_)
            | Self::LoadTask(_)
            | Self::NoRequest(_)
            | Self::EndedEarly
            | Self::Fault(_) => 3,
        }
    }
}

/// One phase of the drill: what its requests saw, and how it fared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseReport {
    /// Its figures.
    #[serde(flatten)]
    pub stats: PhaseStats,
    /// The pool over the phase, from the samples of `/api/pools`.
    #[serde(flatten)]
    pub pool: PhasePool,
    /// Kinds of failure that are not a `503` naming its cause.
    pub unexpected: Vec<String>,
    /// Its longest wait was within the deadline and the margin.
    pub within_deadline: bool,
    /// For a fault: the first success came within the recovery bound.
    pub recovered_in_bound: Option<bool>,
}

/// The pool over one phase, from the samples of `/api/pools` taken in it
/// (every [`POOL_EVERY`]); each `None` when no sample fell in the phase,
/// the limits also when the pool's sizing is fixed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PhasePool {
    /// The most connections in use at a sample.
    pub peak_in_use: Option<u32>,
    /// The lowest adaptive limit sampled.
    pub limit_min: Option<u32>,
    /// The highest adaptive limit sampled.
    pub limit_max: Option<u32>,
    /// The adaptive limit at the phase's last sample.
    pub limit_last: Option<u32>,
}

impl PhasePool {
    /// The pool over `phase`, from `samples` (when each was read, and
    /// what), in the order taken; samples outside the phase are left out.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use tidewater_lab::drill::PhasePool;
    /// use tidewater_lab::faults::Phase;
    /// use tidewater_lab::load::report::PoolSample;
    ///
    /// let t0 = Instant::now();
    /// let ms = |n| t0 + Duration::from_millis(n);
    /// let phase = Phase { name: "cpu-hog".into(), start: t0, end: ms(1_000), window: None };
    /// let at = |n, in_use, limit| (ms(n), PoolSample { in_use, limit, adaptive: true, ..PoolSample::default() });
    /// let samples = [at(250, 8, 10), at(500, 4, 5), at(750, 6, 7), at(1_000, 9, 9)];
    /// let pool = PhasePool::of(&phase, &samples);
    /// assert_eq!(pool.peak_in_use, Some(8));
    /// assert_eq!((pool.limit_min, pool.limit_max, pool.limit_last), (Some(5), Some(10), Some(7)));
    /// ```
    pub fn of(phase: &Phase, samples: &[(Instant, PoolSample)]) -> Self {
        let within: Vec<&PoolSample> = samples
            .iter()
            .filter(|(at, _)| *at >= phase.start && *at < phase.end)
            .map(|(_, sample)| sample)
            .collect();
        let limits = || {
            within
                .iter()
                .filter(|sample| sample.adaptive)
                .map(|sample| sample.limit)
        };
        Self {
            peak_in_use: within.iter().map(|sample| sample.in_use).max(),
            limit_min: limits().min(),
            limit_max: limits().max(),
            limit_last: limits().next_back(),
        }
    }

    /// The limits for a table: `min–max (last)`, blank when fixed.
    fn limits(&self) -> String {
        match (self.limit_min, self.limit_max, self.limit_last) {
            (Some(min), Some(max), Some(last)) => format!("{min}–{max} ({last})"),
            _ => String::new(),
        }
    }
}

/// Reads the first pool of the service at `base` every [`POOL_EVERY`]
/// into `samples`, with when each answer came, until aborted. An
/// unanswered read is skipped.
async fn sample_pool(base: String, samples: Arc<Mutex<Vec<(Instant, PoolSample)>>>) {
    let client = reqwest::Client::new();
    let mut ticks = tokio::time::interval(POOL_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Ok((_, sample)) = load::pool_status(&client, &base, None, POOL_TIMEOUT).await {
            let at = Instant::now();
            samples
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((at, sample));
        }
    }
}

/// The drill's settings, for the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrillSettings {
    /// The faults, in order.
    pub faults: Vec<Fault>,
    /// Each lasting fault's hold, seconds.
    pub hold_seconds: f64,
    /// The calm phases, seconds.
    pub phase_seconds: f64,
    /// Virtual users.
    pub users: u32,
    /// Their mean think time, seconds.
    pub think_mean_seconds: f64,
    /// The service's request deadline, seconds.
    pub request_timeout_seconds: f64,
    /// The margin beyond it, seconds.
    pub margin_seconds: f64,
    /// The recovery bound, seconds.
    pub recovery_bound_seconds: f64,
    /// The cluster's `max_connections`.
    pub max_connections: u32,
    /// The service's `pool.max_size`.
    pub max_size: u32,
    /// Every key passed to the service.
    pub service_settings: Vec<String>,
}

impl DrillSettings {
    /// The settings of `config`, which passed `service_settings` to the
    /// service.
    fn of(config: &DrillConfig, service_settings: Vec<String>) -> Self {
        Self {
            faults: config.faults.clone(),
            hold_seconds: config.hold.as_secs_f64(),
            phase_seconds: config.phase.as_secs_f64(),
            users: config.users,
            think_mean_seconds: config.think.as_secs_f64(),
            request_timeout_seconds: config.request_timeout.as_secs_f64(),
            margin_seconds: config.margin.as_secs_f64(),
            recovery_bound_seconds: config.recovery_bound.as_secs_f64(),
            max_connections: config.max_connections,
            max_size: config.max_size,
            service_settings,
        }
    }
}

/// The report of a drill, as `--json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    /// The command line that made it.
    pub command: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// The settings.
    pub settings: DrillSettings,
    /// The PostgreSQL server version.
    pub server_version: String,
    /// Each phase: the baseline, then one per fault.
    pub phases: Vec<PhaseReport>,
    /// What the load did over the whole drill.
    pub load: LoadSummary,
    /// The load's correctness check, after the last phase.
    pub correctness: CheckReport,
    /// What the service logged.
    pub service_log: Option<LogSummary>,
    /// How it stopped.
    pub shutdown: Option<StopReport>,
    /// Every verdict.
    pub verdicts: Vec<Verdict>,
    /// Every verdict passed.
    pub passed: bool,
}

/// How a request of the load is counted in a phase: a success, or a
/// failure of kind `503 pool-timeout`, `500 database-error`, `transport
/// timeout`…
///
/// ```
/// use tidewater_lab::drill::outcome;
/// use tidewater_lab::faults::Outcome;
/// use tidewater_lab::load::record::{Op, Outcome as Answer};
///
/// let funds = Answer::Answered { status: 422, problem: Some("insufficient-funds".into()) };
/// assert_eq!(outcome(Op::Transfer, &funds), Outcome::Ok);
/// let busy = Answer::Answered { status: 503, problem: Some("pool-timeout".into()) };
/// assert_eq!(outcome(Op::ReadAccount, &busy), Outcome::failed("503 pool-timeout"));
/// ```
pub fn outcome(op: crate::load::record::Op, answer: &crate::load::record::Outcome) -> Outcome {
    match classify(op, answer) {
        Class::Ok => Outcome::Ok,
        Class::Error { .. } => Outcome::failed(answer.label()),
    }
}

/// Whether a failure kind is a `503` naming its cause: `503 ` and a
/// problem type slug.
///
/// ```
/// use tidewater_lab::drill::names_its_cause;
///
/// assert!(names_its_cause("503 database-unavailable"));
/// assert!(!names_its_cause("503"));
/// assert!(!names_its_cause("500 database-error"));
/// assert!(!names_its_cause("transport timeout"));
/// ```
pub fn names_its_cause(kind: &str) -> bool {
    kind.strip_prefix("503 ")
        .is_some_and(|slug| !slug.trim().is_empty())
}

/// Judges each phase and the drill (see the module documentation). The
/// phases' [`pool`](PhaseReport::pool) is left empty, for the caller.
pub fn judge(
    config: &DrillConfig,
    stats: Vec<PhaseStats>,
    correctness: &CheckReport,
) -> (Vec<PhaseReport>, Vec<Verdict>) {
    let phases: Vec<PhaseReport> = stats
        .into_iter()
        .map(|stats| judge_phase(config, stats))
        .collect();
    let verdicts = vec![
        answers_verdict(&phases),
        deadline_verdict(config, &phases),
        recovery_verdict(config, &phases),
        requests_verdict(&phases),
        slo::correctness(correctness),
    ];
    (phases, verdicts)
}

/// One phase judged: its unexpected failures, whether it met the
/// deadline and, after a fault, the recovery bound.
fn judge_phase(config: &DrillConfig, stats: PhaseStats) -> PhaseReport {
    PhaseReport {
        pool: PhasePool::default(),
        unexpected: stats
            .failed_by_kind
            .keys()
            .filter(|kind| !names_its_cause(kind))
            .cloned()
            .collect(),
        within_deadline: stats.longest_wait <= config.request_timeout + config.margin,
        recovered_in_bound: stats
            .fault
            .map(|_| stats.recovery.is_some_and(|r| r <= config.recovery_bound)),
        stats,
    }
}

/// The names of `phases`, for a verdict's text: `crash, hang`.
fn names<'a>(phases: impl IntoIterator<Item = &'a PhaseReport>) -> String {
    phases
        .into_iter()
        .map(|phase| phase.stats.phase.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `answers`: every request succeeded or got a 503 naming its cause.
fn answers_verdict(phases: &[PhaseReport]) -> Verdict {
    let unexpected: u64 = phases
        .iter()
        .flat_map(|phase| {
            phase
                .unexpected
                .iter()
                .map(|kind| phase.stats.failed_by_kind[kind])
        })
        .sum();
    let failed: u64 = phases.iter().map(|phase| phase.stats.failed).sum();
    let mut kinds: Vec<String> = phases
        .iter()
        .flat_map(|phase| phase.unexpected.iter().cloned())
        .collect();
    kinds.sort();
    kinds.dedup();
    Verdict {
        name: "answers".into(),
        passed: unexpected == 0,
        measured: Some(unexpected as f64),
        bound: Some(0.0),
        text: if unexpected == 0 {
            format!("every request succeeded or got a 503 naming its cause ({failed} such 503s)")
        } else {
            format!(
                "{unexpected} request(s) failed without a 503 naming the cause: {} (in {})",
                kinds.join(", "),
                names(phases.iter().filter(|p| !p.unexpected.is_empty()))
            )
        },
    }
}

/// `deadline`: no answer took longer than the request deadline plus the
/// margin.
fn deadline_verdict(config: &DrillConfig, phases: &[PhaseReport]) -> Verdict {
    let limit = config.request_timeout + config.margin;
    let longest = phases
        .iter()
        .map(|phase| phase.stats.longest_wait)
        .max()
        .unwrap_or_default();
    let late: Vec<&PhaseReport> = phases.iter().filter(|p| !p.within_deadline).collect();
    Verdict {
        name: "deadline".into(),
        passed: late.is_empty(),
        measured: Some(longest.as_secs_f64()),
        bound: Some(limit.as_secs_f64()),
        text: format!(
            "longest answer {}, bound {} (request deadline {} + margin {}){}",
            seconds(longest.as_secs_f64()),
            seconds(limit.as_secs_f64()),
            seconds(config.request_timeout.as_secs_f64()),
            seconds(config.margin.as_secs_f64()),
            if late.is_empty() {
                String::new()
            } else {
                format!("; too slow in {}", names(late))
            }
        ),
    }
}

/// `recovery`: after every fault the first success came within the
/// recovery bound of the database's return (no fault: no proof).
fn recovery_verdict(config: &DrillConfig, phases: &[PhaseReport]) -> Verdict {
    let faults: Vec<&PhaseReport> = phases
        .iter()
        .filter(|phase| phase.recovered_in_bound.is_some())
        .collect();
    let slowest = faults.iter().filter_map(|phase| phase.stats.recovery).max();
    let unrecovered: Vec<&PhaseReport> = faults
        .iter()
        .copied()
        .filter(|phase| phase.recovered_in_bound != Some(true))
        .collect();
    let bound = seconds(config.recovery_bound.as_secs_f64());
    Verdict {
        name: "recovery".into(),
        passed: !faults.is_empty() && unrecovered.is_empty(),
        measured: slowest.map(|r| r.as_secs_f64()),
        bound: Some(config.recovery_bound.as_secs_f64()),
        text: if faults.is_empty() {
            "no fault phase was run".into()
        } else if unrecovered.is_empty() {
            format!(
                "after every fault the first success came within {bound} of the database's return (slowest {})",
                seconds(slowest.unwrap_or_default().as_secs_f64())
            )
        } else {
            format!(
                "no success within {bound} of the database's return after {}",
                names(unrecovered)
            )
        },
    }
}

/// `requests`: every phase saw requests.
fn requests_verdict(phases: &[PhaseReport]) -> Verdict {
    let idle: Vec<&PhaseReport> = phases
        .iter()
        .filter(|phase| phase.stats.requests == 0)
        .collect();
    let requests: u64 = phases.iter().map(|phase| phase.stats.requests).sum();
    Verdict {
        name: "requests".into(),
        passed: !phases.is_empty() && idle.is_empty(),
        measured: Some(requests as f64),
        bound: None,
        text: if idle.is_empty() {
            format!("{requests} requests over {} phases", phases.len())
        } else {
            format!("no request ended in {}", names(idle))
        },
    }
}

/// Runs the drill `config` describes and returns its report; an error
/// means no drill could be made.
///
/// # Errors
/// Bad options, a private PostgreSQL that cannot be made, a service that
/// did not start, a fault that could not be injected, an interruption.
pub async fn run(config: &DrillConfig) -> Result<DrillReport, DrillError> {
    config.check().map_err(DrillError::Invalid)?;
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    tracing::info!("creating a private PostgreSQL cluster");
    let cluster = PgCluster::new().await.map_err(DrillError::Cluster)?;
    let result = drill(config, &cluster, started_at).await;
    if result.is_err() {
        let log = cluster.log();
        let tail: Vec<&str> = log.lines().rev().take(10).collect();
        tracing::warn!(
            "the private server's last log lines:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    // Dropping the cluster stops the server and removes its folder.
    drop(cluster);
    result
}

/// Sets `cluster`'s `max_connections` and makes the run's role and
/// database ([`ROLE`], [`DATABASE`]): what the drill and the fleet run on.
pub(crate) async fn private_database(
    cluster: &PgCluster,
    max_connections: u32,
) -> std::io::Result<()> {
    cluster.set_max_connections(max_connections).await?;
    cluster.create_role(ROLE, PASSWORD, None).await?;
    cluster
        .execute(&format!("CREATE DATABASE {DATABASE} OWNER {ROLE}"))
        .await
        .map(drop)
}

/// The URL of the run's database on `cluster`, as its role.
pub(crate) fn database_url(cluster: &PgCluster) -> String {
    cluster.url_for(ROLE, PASSWORD, DATABASE)
}

async fn drill(
    config: &DrillConfig,
    cluster: &PgCluster,
    started_at: String,
) -> Result<DrillReport, DrillError> {
    private_database(cluster, config.max_connections)
        .await
        .map_err(DrillError::Cluster)?;
    let server_version = cluster
        .execute("SHOW server_version")
        .await
        .map_err(DrillError::Cluster)?;

    let mut settings = vec![
        format!("request_timeout={}ms", config.request_timeout.as_millis()),
        format!("pool.max_size={}", config.max_size),
    ];
    settings.extend(config.settings.iter().cloned());
    let spawn = SpawnOptions {
        exe: config.exe.clone(),
        database_url: Some(database_url(cluster)),
        settings: settings.clone(),
        ..SpawnOptions::default()
    };
    tracing::info!(
        "PostgreSQL {server_version} on 127.0.0.1:{} (max_connections {}); starting the service",
        cluster.port(),
        config.max_connections
    );
    let service = Service::start(&Target::Spawn(spawn))
        .await
        .map_err(DrillError::Service)?;

    let outcome = under_load(config, cluster, &service).await;
    let log = service.log();
    let stop = service.stop().await;
    let (stats, pools, load_report) = outcome?;

    let (mut phases, mut verdicts) = judge(config, stats, &load_report.correctness);
    for (phase, pool) in phases.iter_mut().zip(pools) {
        phase.pool = pool;
    }
    if let Some(stop) = &stop {
        verdicts.push(slo::clean_shutdown(stop));
    }
    Ok(DrillReport {
        command: config.command.clone(),
        started_at,
        settings: DrillSettings::of(config, settings),
        server_version,
        phases,
        load: LoadSummary::from(&load_report),
        correctness: load_report.correctness,
        service_log: log,
        shutdown: stop,
        passed: verdicts.iter().all(|verdict| verdict.passed),
        verdicts,
    })
}

/// What the drill saw under load: each phase's figures and pool, and the
/// load's report.
type Loaded = (Vec<PhaseStats>, Vec<PhasePool>, load::report::LoadReport);

/// Runs the users against `service` and the schedule against `cluster`,
/// reading the pool meanwhile; returns each phase's figures and pool, and
/// the load's report.
async fn under_load(
    config: &DrillConfig,
    cluster: &PgCluster,
    service: &Service,
) -> Result<Loaded, DrillError> {
    let recorder = PhaseRecorder::new();
    let stop = StopHandle::new();
    let hooks = Hooks {
        tap: Some(tap_into(&recorder)),
        stop: Some(stop.clone()),
    };
    let load_config = load_config(config, service);
    let mut load_task = tokio::spawn(async move { load::run_with(&load_config, hooks).await });

    // The users start once the accounts are open.
    let deadline = Instant::now() + FIRST_REQUEST_DEADLINE;
    while recorder.is_empty() && !load_task.is_finished() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let samples = Arc::new(Mutex::new(Vec::new()));
    let mut early = None;
    let scheduled = if recorder.is_empty() {
        None
    } else {
        tracing::info!(
            "{} users running; baseline, then {}",
            config.users,
            config
                .faults
                .iter()
                .map(|fault| fault.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let watcher = tokio::spawn(watch_phases(recorder.clone()));
        let sampler = tokio::spawn(sample_pool(service.base().to_owned(), samples.clone()));
        let schedule = config.schedule();
        let result = tokio::select! {
            result = schedule.run(cluster, &recorder) => Some(result),
            // The load ended on its own: interrupted, or it failed.
            joined = &mut load_task => {
                early = Some(joined);
                None
            }
        };
        watcher.abort();
        sampler.abort();
        result
    };
    stop.stop();
    let loaded = match early {
        Some(joined) => joined,
        None => {
            tracing::info!("stopping the users; checking correctness");
            load_task.await
        }
    };
    let report = outcome_of(scheduled, loaded, recorder.is_empty())?;
    let phases = recorder.phases();
    let samples = samples.lock().unwrap_or_else(PoisonError::into_inner);
    let pools = phases
        .iter()
        .map(|phase| PhasePool::of(phase, &samples))
        .collect();
    Ok((recorder.stats(), pools, report))
}

/// A tap that records every request of the load into `recorder`.
fn tap_into(recorder: &PhaseRecorder) -> Tap {
    let recorder = recorder.clone();
    Arc::new(move |tapped: Tapped<'_>| {
        recorder.record(tapped.start, tapped.end, outcome(tapped.op, tapped.outcome));
    })
}

/// The load the drill runs against `service`: its users, bounded only by
/// [`LOAD_CAP`] (the drill stops them).
fn load_config(config: &DrillConfig, service: &Service) -> LoadConfig {
    LoadConfig {
        target: Target::Url(service.base().to_owned()),
        users: config.users,
        duration: Some(LOAD_CAP),
        requests: None,
        ramp: None,
        scenario: Scenario {
            think: config.think,
            ..Scenario::default()
        },
        accounts: config.accounts,
        // Far past the deadline: a late answer is measured, not cut off.
        request_timeout: config.request_timeout + config.margin + Duration::from_secs(10),
        // The drill judges by its own verdicts.
        slos: Slos::default(),
        progress: false,
        command: config.command.clone(),
        ..LoadConfig::default()
    }
}

/// The load's report, or why the drill failed: the schedule's result
/// (`None` when it did not run, or the load ended before it), the load's,
/// and whether no request was made.
fn outcome_of(
    scheduled: Option<Result<(), FaultError>>,
    loaded: Result<Result<load::report::LoadReport, LoadError>, tokio::task::JoinError>,
    no_request: bool,
) -> Result<load::report::LoadReport, DrillError> {
    match (scheduled, loaded) {
        (Some(Err(error)), _) => Err(DrillError::Fault(error)),
        (_, Err(join)) => Err(DrillError::LoadTask(join)),
        (_, Ok(Err(error))) => Err(DrillError::Load(error)),
        (Some(Ok(())), Ok(Ok(report))) => Ok(report),
        (None, Ok(Ok(_))) if no_request => Err(DrillError::NoRequest(FIRST_REQUEST_DEADLINE)),
        (None, Ok(Ok(_))) => Err(DrillError::EndedEarly),
    }
}

/// Notes each phase as it begins and its database comes back.
async fn watch_phases(recorder: PhaseRecorder) {
    let (mut begun, mut restored) = (0, 0);
    loop {
        let phases = recorder.phases();
        for phase in phases.iter().skip(begun) {
            tracing::info!("phase {}", phase.name);
        }
        begun = phases.len();
        let back = phases.iter().filter(|phase| phase.window.is_some()).count();
        for phase in phases.iter().filter(|p| p.window.is_some()).skip(restored) {
            if let Some(window) = &phase.window {
                tracing::info!(
                    "  {}: database back after {} ({})",
                    phase.name,
                    seconds(window.outage().as_secs_f64()),
                    window.detail
                );
            }
        }
        restored = back;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A duration for the table: milliseconds below 10 s.
fn short(duration: Duration) -> String {
    if duration < Duration::from_secs(10) {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

impl DrillReport {
    /// The phases as a Markdown table.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| phase | requests | failed | failures by kind | failed after the return | p99 | longest wait | outage | recovery | peak in use | limit min–max (last) |\n\
             |---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for phase in &self.phases {
            let stats = &phase.stats;
            let kinds: Vec<String> = stats
                .failed_by_kind
                .iter()
                .map(|(kind, n)| format!("{kind}: {n}"))
                .collect();
            let failed = if stats.failed == 0 {
                "0".to_owned()
            } else {
                format!(
                    "{} ({:.1} %)",
                    stats.failed,
                    100.0 * stats.failed as f64 / stats.requests.max(1) as f64
                )
            };
            let recovery = match (stats.fault, stats.recovery) {
                (None, _) => String::new(),
                (Some(_), Some(recovery)) => short(recovery),
                (Some(_), None) => "none".to_owned(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {failed} | {} | {} | {} | {} | {} | {recovery} | {} | {} |",
                stats.phase,
                stats.requests,
                kinds.join(", "),
                match stats.fault {
                    Some(_) => stats.failed_after_restore.to_string(),
                    None => String::new(),
                },
                short(stats.latency_p99),
                short(stats.longest_wait),
                stats.outage.map_or(String::new(), short),
                phase
                    .pool
                    .peak_in_use
                    .map_or(String::new(), |n| n.to_string()),
                phase.pool.limits(),
            );
        }
        out
    }

    /// The report for people.
    pub fn text(&self) -> String {
        let s = &self.settings;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "tidewater-lab drill: {} users (think {} mean) against the service on a private PostgreSQL {} (max_connections {}, pool max_size {})",
            s.users,
            seconds(s.think_mean_seconds),
            self.server_version,
            s.max_connections,
            s.max_size
        );
        let _ = writeln!(out, "  command       {}", self.command);
        let _ = writeln!(
            out,
            "  schedule      baseline {}, then {} (hold {}, {} calm after each recovery)",
            seconds(s.phase_seconds),
            s.faults
                .iter()
                .map(|fault| fault.name())
                .collect::<Vec<_>>()
                .join(", "),
            seconds(s.hold_seconds),
            seconds(s.phase_seconds)
        );
        let _ = writeln!(
            out,
            "  bounds        request deadline {} + margin {}, recovery {}",
            seconds(s.request_timeout_seconds),
            seconds(s.margin_seconds),
            seconds(s.recovery_bound_seconds)
        );
        out.push('\n');
        out.push_str(&self.table());
        out.push('\n');
        let l = &self.load;
        let _ = writeln!(
            out,
            "  load          {} requests ({:.0}/s) · p99 {} · max {} · availability {}",
            l.requests,
            l.throughput_rps,
            seconds(l.latency_seconds.p99),
            seconds(l.latency_seconds.max),
            slo::percent(l.availability)
        );
        let answers: BTreeMap<&String, &u64> = l.answers.iter().collect();
        let answers: Vec<String> = answers
            .iter()
            .map(|(label, n)| format!("{label}: {n}"))
            .collect();
        let _ = writeln!(out, "  answers       {}", answers.join(" · "));
        if let Some(log) = &self.service_log {
            let _ = writeln!(
                out,
                "  service log   {} warnings, {} errors",
                log.warnings, log.errors
            );
        }
        slo::write_verdicts(&mut out, &self.verdicts, self.passed);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(phase: &str, fault: Option<Fault>) -> PhaseStats {
        PhaseStats {
            phase: phase.into(),
            fault,
            duration: Duration::from_secs(5),
            requests: 100,
            succeeded: 100,
            failed: 0,
            failed_by_kind: BTreeMap::new(),
            failed_after_restore: 0,
            longest_wait: Duration::from_millis(40),
            latency_p99: Duration::from_millis(30),
            outage: fault.map(|_| Duration::from_secs(3)),
            recovery: fault.map(|_| Duration::from_millis(300)),
            detail: None,
        }
    }

    fn passed(verdicts: &[Verdict], name: &str) -> bool {
        verdicts
            .iter()
            .find(|verdict| verdict.name == name)
            .unwrap_or_else(|| panic!("no verdict {name}"))
            .passed
    }

    fn clean() -> CheckReport {
        CheckReport {
            passed: true,
            ..CheckReport::default()
        }
    }

    #[test]
    fn a_clean_drill_passes_every_verdict() {
        let mut crash = stats("crash", Some(Fault::Crash));
        crash.failed = 7;
        crash
            .failed_by_kind
            .insert("503 database-unavailable".into(), 5);
        crash.failed_by_kind.insert("503 pool-timeout".into(), 2);
        let (phases, verdicts) = judge(
            &DrillConfig::default(),
            vec![stats("baseline", None), crash],
            &clean(),
        );
        assert!(verdicts.iter().all(|v| v.passed), "{verdicts:#?}");
        assert_eq!(phases[0].recovered_in_bound, None);
        assert_eq!(phases[1].recovered_in_bound, Some(true));
        assert!(phases[1].unexpected.is_empty());
    }

    #[test]
    fn a_500_or_a_transport_error_fails_the_answers() {
        let mut hang = stats("hang", Some(Fault::Hang));
        hang.failed_by_kind.insert("500 database-error".into(), 1);
        hang.failed_by_kind.insert("transport timeout".into(), 2);
        hang.failed_by_kind
            .insert("503 request-deadline-exceeded".into(), 4);
        let (phases, verdicts) = judge(&DrillConfig::default(), vec![hang], &clean());
        assert!(!passed(&verdicts, "answers"));
        assert_eq!(
            phases[0].unexpected,
            ["500 database-error", "transport timeout"]
        );
        let answers = &verdicts[0];
        assert_eq!(answers.measured, Some(3.0));
        assert!(answers.text.contains("in hang"), "{}", answers.text);
    }

    #[test]
    fn an_answer_past_the_deadline_and_margin_fails() {
        let config = DrillConfig::default();
        let mut hang = stats("hang", Some(Fault::Hang));
        hang.longest_wait = config.request_timeout + config.margin;
        let (_, verdicts) = judge(&config, vec![hang.clone()], &clean());
        assert!(passed(&verdicts, "deadline"), "exactly at the bound passes");
        hang.longest_wait += Duration::from_millis(1);
        let (phases, verdicts) = judge(&config, vec![hang], &clean());
        assert!(!phases[0].within_deadline);
        assert!(!passed(&verdicts, "deadline"));
    }

    #[test]
    fn a_slow_or_missing_recovery_fails() {
        let config = DrillConfig::default();
        let mut crash = stats("crash", Some(Fault::Crash));
        crash.recovery = Some(config.recovery_bound + Duration::from_millis(1));
        let mut fill = stats("fill-connections", Some(Fault::FillConnections));
        fill.recovery = None;
        let (phases, verdicts) = judge(&config, vec![crash, fill], &clean());
        assert_eq!(phases[0].recovered_in_bound, Some(false));
        assert_eq!(phases[1].recovered_in_bound, Some(false));
        let recovery = verdicts.iter().find(|v| v.name == "recovery").unwrap();
        assert!(!recovery.passed);
        assert!(
            recovery.text.contains("crash, fill-connections"),
            "{}",
            recovery.text
        );
        // Without any fault there is nothing to recover from: no proof.
        let (_, verdicts) = judge(&config, vec![stats("baseline", None)], &clean());
        assert!(!passed(&verdicts, "recovery"));
    }

    #[test]
    fn a_phase_without_requests_or_a_broken_invariant_fails() {
        let mut quiet = stats("restart", Some(Fault::Restart));
        quiet.requests = 0;
        let broken = CheckReport {
            passed: false,
            violation_count: 1,
            violations: vec!["money is not conserved".into()],
            ..CheckReport::default()
        };
        let (_, verdicts) = judge(&DrillConfig::default(), vec![quiet], &broken);
        assert!(!passed(&verdicts, "requests"));
        assert!(!passed(&verdicts, "correctness"));
    }

    #[test]
    fn a_phase_reads_back_from_its_json() {
        let mut crash = stats("crash", Some(Fault::Crash));
        crash.failed_by_kind.insert("transport timeout".into(), 1);
        let (phases, _) = judge(&DrillConfig::default(), vec![crash], &clean());
        let json = serde_json::to_value(&phases[0]).unwrap();
        assert_eq!(json["phase"], "crash");
        assert_eq!(json["recovery_s"], 0.3);
        assert_eq!(json["unexpected"][0], "transport timeout");
        assert_eq!(json["latency_p99_s"], 0.03);
        assert!(json["limit_min"].is_null(), "{json:#}");
        let back: PhaseReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, phases[0]);
    }

    #[test]
    fn the_pool_of_a_phase_is_in_its_json_and_its_row() {
        let (mut phases, _) = judge(
            &DrillConfig::default(),
            vec![
                stats("baseline", None),
                stats("cpu-hog", Some(Fault::CpuHog)),
            ],
            &clean(),
        );
        phases[0].pool.peak_in_use = Some(10);
        phases[1].pool = PhasePool {
            peak_in_use: Some(12),
            limit_min: Some(4),
            limit_max: Some(16),
            limit_last: Some(8),
        };
        let json = serde_json::to_value(&phases[1]).unwrap();
        assert_eq!(
            (&json["limit_min"], &json["limit_max"], &json["limit_last"]),
            (&4.into(), &16.into(), &8.into())
        );
        assert_eq!(json["peak_in_use"], 12);
        let back: PhaseReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, phases[1]);

        let table = report(phases).table();
        let rows: Vec<&str> = table.lines().collect();
        assert!(
            rows[0].contains("| p99 |") && rows[0].contains("limit"),
            "{table}"
        );
        // Fixed sizing: no limits.
        assert!(
            rows[2].ends_with("| 30 ms | 40 ms |  |  | 10 |  |"),
            "{table}"
        );
        assert!(rows[3].ends_with("| 12 | 4–16 (8) |"), "{table}");
    }

    /// A report of `phases`, everything else empty.
    fn report(phases: Vec<PhaseReport>) -> DrillReport {
        DrillReport {
            command: String::new(),
            started_at: String::new(),
            settings: DrillSettings::of(&DrillConfig::default(), Vec::new()),
            server_version: String::new(),
            phases,
            load: LoadSummary::default(),
            correctness: clean(),
            service_log: None,
            shutdown: None,
            verdicts: Vec::new(),
            passed: true,
        }
    }

    #[test]
    fn the_pool_must_fit_the_server() {
        let config = DrillConfig {
            max_size: 17,
            ..DrillConfig::default()
        };
        assert!(config.check().unwrap_err().contains("max_size + 4"));
        let none = DrillConfig {
            faults: Vec::new(),
            ..DrillConfig::default()
        };
        assert!(none.check().is_err());
        // The CPU hog's sessions and watcher need room beside a full pool.
        let hog = DrillConfig {
            faults: vec![Fault::CpuHog],
            max_size: 16,
            ..DrillConfig::default()
        };
        assert!(hog.check().unwrap_err().contains("cpu-hog"));
        let hog = DrillConfig {
            max_size: 15,
            ..hog
        };
        assert!(hog.check().is_ok());
    }
}
