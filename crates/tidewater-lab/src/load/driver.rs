//! A run from start to end: [`run`] and [`run_with`] start (or check) the
//! service, then the driver opens the run's accounts, runs the phases with
//! the sampler beside them, checks correctness, and puts the report
//! together; the service is stopped whatever happened.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::accounts::open_accounts;
use super::check::{self, CheckReport, Journal, Observed, Opened};
use super::limits::raise_open_files_limit;
use super::phase::{PhaseResult, Phases, measured, peaks};
use super::probe::pool_status;
use super::progress::Progress;
use super::ramp::{RampReport, StepReport};
use super::record::{Recorder, Stats, Tap};
use super::report::{
    self, LoadReport, MemoryReport, OperationReport, PoolSample, ScenarioInfo, SecondSample,
    TargetInfo,
};
use super::sampler::Sampler;
use super::signals::interrupted;
use super::slo::{self, Verdict};
use super::users::Shared;
use super::{Hooks, LoadConfig, LoadError, observe};
use crate::scrape::Metrics;
use crate::service::Service;

/// Longest the correctness check may take, plus [`CHECK_PER_KEY`] for
/// each idempotency key sent (it reads every transfer).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(600);
/// What each key sent adds to [`CHECK_TIMEOUT`].
pub const CHECK_PER_KEY: Duration = Duration::from_millis(2);
/// Longest the first `GET /api/pools` may take.
const FIRST_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

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
    let service = Service::start(&config.target).await?;
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

/// The run against `service`, up to its report (without the service's
/// log and shutdown, which come once it is stopped).
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
        .map_err(LoadError::Client)?;
    let base = service.base().to_owned();
    let (pool, pool_at_start) = pool_status(&client, &base, None, FIRST_PROBE_TIMEOUT)
        .await
        .map_err(|source| LoadError::NotTheService {
            base: base.clone(),
            source,
        })?;
    let progress = Arc::new(Progress::new(config.progress));
    progress.suspend(|| {
        tracing::info!(
            "{base}{}, pool {pool:?} of {}; opening {} accounts",
            service
                .backend()
                .map_or(String::new(), |b| format!(" ({b})")),
            pool_at_start.max_size,
            config.accounts
        );
    });
    let (shared, accounts) = open_run(config, client, base, hooks.tap).await?;
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let started = Instant::now();
    let sampler = Sampler::start(
        shared.clone(),
        pool.clone(),
        service.pid(),
        started,
        progress.clone(),
    );
    let budget = match hooks.stop {
        Some(stop) => Some(stop.0),
        None => config.requests.map(|n| Arc::new(AtomicU64::new(n))),
    };
    let phases = Phases {
        config,
        shared: shared.clone(),
        sampler,
        progress: progress.clone(),
        started,
        budget,
        pool: pool.clone(),
    };
    let (results, steps) = phases.run().await;
    let timeline = phases.sampler.finish().await;
    progress.finish();
    progress.suspend(|| tracing::info!("checking correctness…"));
    let correctness = check_correctness(&shared, &accounts).await;
    let finished = Finished {
        started_at,
        pool,
        pool_at_start,
        results,
        steps,
        timeline,
        correctness,
    };
    Ok(finished.report(config, service, &shared.base))
}

/// Opens the run's accounts on the service at `base`, and makes what the
/// users share: `client`, the accounts, the recorder (with `tap`), the
/// journal.
async fn open_run(
    config: &LoadConfig,
    client: reqwest::Client,
    base: String,
    tap: Option<Tap>,
) -> Result<(Arc<Shared>, Vec<Opened>), LoadError> {
    let run_id = format!("load-{:08x}", fastrand::u32(..));
    let accounts = open_accounts(
        &client,
        &base,
        &run_id,
        config.accounts,
        config.opening_balance,
    )
    .await
    .map_err(LoadError::Accounts)?;
    let shared = Arc::new(Shared {
        client,
        base,
        accounts: accounts.iter().map(|account| account.id).collect(),
        scenario: config.scenario.clone(),
        run_id,
        recorder: tap.map_or_else(Recorder::default, Recorder::with_tap),
        journal: Journal::default(),
    });
    Ok((shared, accounts))
}

/// Reads what the service holds and checks it against the journal, within
/// [`CHECK_TIMEOUT`] and [`CHECK_PER_KEY`] for each key sent.
async fn check_correctness(shared: &Shared, accounts: &[Opened]) -> CheckReport {
    let journal = shared.journal.snapshot();
    let check_bound = CHECK_TIMEOUT
        + CHECK_PER_KEY.saturating_mul(u32::try_from(journal.len()).unwrap_or(u32::MAX));
    let observed = tokio::time::timeout(
        check_bound,
        observe::observe(&shared.client, &shared.base, accounts, &journal),
    )
    .await
    .unwrap_or_else(|_| Observed {
        unreadable: vec![format!(
            "the service's state within {}",
            humantime::format_duration(check_bound)
        )],
        ..Observed::default()
    });
    check::check(accounts, &journal, &observed)
}

/// What a run measured, for its report.
struct Finished {
    /// When it started (RFC 3339).
    started_at: String,
    /// The pool's name.
    pool: String,
    /// The pool before the users started.
    pool_at_start: PoolSample,
    /// Each phase's measurements.
    results: Vec<PhaseResult>,
    /// A ramp's steps.
    steps: Vec<StepReport>,
    /// Every second's sample.
    timeline: Vec<SecondSample>,
    /// The correctness check.
    correctness: CheckReport,
}

impl Finished {
    /// The report of the run `config` made against `service` at `base`
    /// (its log and shutdown still to come).
    fn report(mut self, config: &LoadConfig, service: &Service, base: &str) -> LoadReport {
        let mut all = Stats::default();
        for result in &self.results {
            all.merge(&result.stats);
        }
        let seconds: f64 = self.results.iter().map(|result| result.seconds).sum();
        let pool = self.pool_section(seconds);
        let steps = std::mem::take(&mut self.steps);
        let ramp = config
            .ramp
            .as_ref()
            .map(|ramp| RampReport::of(ramp.steps.clone(), ramp.step_duration, steps));
        let mut verdicts = match &ramp {
            Some(ramp) => vec![knee_verdict(ramp)],
            None => slo::judge(
                &config.slos,
                &measured(&all, self.first_scrape(), self.last_scrape(), &self.pool),
            ),
        };
        verdicts.push(slo::correctness(&self.correctness));
        LoadReport {
            command: config.command.clone(),
            started_at: self.started_at,
            target: TargetInfo {
                url: base.to_owned(),
                spawned: service.pid().is_some(),
                backend: service.backend().map(str::to_owned),
            },
            users: self
                .results
                .iter()
                .map(|result| result.users)
                .max()
                .unwrap_or(0),
            scenario: scenario_info(config),
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
            operations: operations(&all),
            pool,
            memory: service.memory().map(|memory| MemoryReport {
                peak_rss_bytes: memory.peak_rss_bytes,
                final_rss_bytes: memory.rss_bytes,
            }),
            service_log: None,
            shutdown: None,
            correctness: self.correctness,
            passed: verdicts.iter().all(|verdict| verdict.passed),
            verdicts,
            ramp,
            timeline: self.timeline,
        }
    }

    /// `/metrics` before the first phase.
    fn first_scrape(&self) -> Option<&Metrics> {
        self.results
            .first()
            .and_then(|result| result.start.as_ref())
    }

    /// `/metrics` after the last phase.
    fn last_scrape(&self) -> Option<&Metrics> {
        self.results.last().and_then(|result| result.end.as_ref())
    }

    /// The pool over the run's `seconds`: its counters between the first
    /// and last scrape, its peaks and adaptive limits from the samples.
    fn pool_section(&self, seconds: f64) -> report::PoolSection {
        let mut pool = match (self.first_scrape(), self.last_scrape()) {
            (Some(first), Some(last)) => report::pool_numbers(first, last, &self.pool, seconds),
            _ => report::PoolSection {
                name: self.pool.clone(),
                ..report::PoolSection::default()
            },
        };
        if pool.max_size == 0 {
            pool.max_size = self.pool_at_start.max_size;
        }
        (pool.peak_in_use, pool.peak_waiters) = peaks(&self.timeline, 0.0, f64::INFINITY);
        pool.adaptive_limit = report::LimitRange::of(self.timeline.iter().filter_map(|s| s.pool));
        pool
    }
}

/// A ramp's verdict: it found its knee.
fn knee_verdict(ramp: &RampReport) -> Verdict {
    Verdict {
        name: "ramp_knee".into(),
        passed: ramp.knee_users.is_some(),
        measured: ramp.knee_users.map(f64::from),
        bound: None,
        text: ramp.summary(),
    }
}

/// The scenario of `config`, for the report.
fn scenario_info(config: &LoadConfig) -> ScenarioInfo {
    ScenarioInfo {
        think_mean_seconds: config.scenario.think.as_secs_f64(),
        resend_probability: config.scenario.resend,
        ledger_probability: config.scenario.ledger,
        accounts: config.accounts,
        opening_balance: config.opening_balance,
        request_budget: config.requests,
    }
}

/// Each operation's requests, errors and latency.
fn operations(all: &Stats) -> BTreeMap<String, OperationReport> {
    all.ops
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
        .collect()
}
