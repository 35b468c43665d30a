//! A run's phases: one for a plain run, one per step of a ramp. Each
//! starts its users, waits until they are done (at its deadline or when
//! the request budget is spent), and measures what they saw between two
//! scrapes of `/metrics`; a ramp's step is judged on its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::LoadConfig;
use super::probe::scrape;
use super::progress::Progress;
use super::ramp::StepReport;
use super::record::Stats;
use super::report::{self, SecondSample};
use super::sampler::Sampler;
use super::slo::{self, Measured, Slos};
use super::users::{self, Shared, Stop};
use crate::scrape::Metrics;

/// One phase's measurements.
pub(super) struct PhaseResult {
    /// Its users.
    pub(super) users: u32,
    /// How long they ran.
    pub(super) seconds: f64,
    /// From and to, seconds since the load started.
    pub(super) from: f64,
    pub(super) to: f64,
    /// What the users saw.
    pub(super) stats: Stats,
    /// `/metrics` before and after.
    pub(super) start: Option<Metrics>,
    pub(super) end: Option<Metrics>,
}

/// What every phase of a run shares.
pub(super) struct Phases<'a> {
    pub(super) config: &'a LoadConfig,
    pub(super) shared: Arc<Shared>,
    pub(super) sampler: Sampler,
    pub(super) progress: Arc<Progress>,
    /// When the load started: phases are timed from it.
    pub(super) started: Instant,
    /// Requests left to the run (a stop handle's, or `--requests`).
    pub(super) budget: Option<Arc<AtomicU64>>,
    /// The pool's name in `/api/pools` and `/metrics`.
    pub(super) pool: String,
}

impl Phases<'_> {
    /// Runs the phases in turn; a ramp stops at its first failing step.
    /// Returns each phase's result, and the ramp's steps (none without a
    /// ramp).
    pub(super) async fn run(&self) -> (Vec<PhaseResult>, Vec<StepReport>) {
        let mut results = Vec::new();
        let mut steps = Vec::new();
        for (index, (users, duration)) in self.config.phases().into_iter().enumerate() {
            let result = self.run_phase(index, users, duration).await;
            if self.config.ramp.is_some() {
                let step = step_report(
                    &result,
                    &self.sampler.samples(),
                    &self.pool,
                    &self.config.slos,
                );
                let passed = step.passed;
                self.note_step(index, users, &step);
                steps.push(step);
                results.push(result);
                if !passed {
                    break;
                }
            } else {
                results.push(result);
            }
        }
        (results, steps)
    }

    /// Notes a ramp step's numbers and verdict.
    fn note_step(&self, index: usize, users: u32, step: &StepReport) {
        let acquire = step
            .acquire_wait_p99_seconds
            .map_or("unknown".to_owned(), |p99| {
                format!("≤ {}", slo::seconds(p99))
            });
        self.progress.suspend(|| {
            tracing::info!(
                "step {}: {users} users, {:.0} req/s, p99 {}, acquire p99 {acquire}, errors {}: {}",
                index + 1,
                step.throughput_rps,
                slo::seconds(step.latency_seconds.p99),
                slo::percent(step.error_rate),
                if step.passed { "pass" } else { "FAIL" }
            );
        });
    }

    /// Runs `users` users for `duration` (or until the budget is spent).
    async fn run_phase(&self, index: usize, users: u32, duration: Duration) -> PhaseResult {
        let shared = &self.shared;
        let start = scrape(&shared.client, &shared.base).await;
        let by_requests = self.budget.is_some() && self.config.duration.is_none();
        let label = match &self.config.ramp {
            Some(ramp) => format!("step {}/{}: {users} users", index + 1, ramp.steps.len()),
            None => format!("{users} users"),
        };
        self.progress.phase(
            label.clone(),
            match (&self.budget, by_requests) {
                (Some(budget), true) => budget.load(Ordering::Relaxed),
                _ => duration.as_secs(),
            },
        );
        self.sampler.begin(label, users, by_requests);
        let from = self.started.elapsed().as_secs_f64();
        let phase_start = Instant::now();
        let stop = Arc::new(Stop {
            deadline: phase_start + duration,
            budget: self.budget.clone(),
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
        self.wait_for_users(running, duration).await;
        let seconds = phase_start.elapsed().as_secs_f64();
        self.sampler.end_phase();
        let end = scrape(&shared.client, &shared.base).await;
        PhaseResult {
            users,
            seconds,
            from,
            to: self.started.elapsed().as_secs_f64(),
            stats: shared.recorder.take_phase(),
            start,
            end,
        }
    }

    /// Waits until the users of a phase of `duration` are done. Every
    /// request has a timeout and none starts after the deadline: the users
    /// are done within one request timeout of it; those still running
    /// (with a margin) are stopped.
    async fn wait_for_users(&self, mut running: JoinSet<()>, duration: Duration) {
        let bound = duration + self.config.request_timeout + Duration::from_secs(5);
        let finished = tokio::time::timeout(bound, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            running.abort_all();
            self.progress.suspend(|| {
                tracing::warn!(
                    "{}: users still running {} after the deadline were stopped",
                    self.sampler.label(),
                    humantime::format_duration(bound - duration)
                );
            });
        }
    }
}

/// The peaks of in-use connections and waiters in the samples between
/// `from` and `to` (seconds; a sample covers the second before it).
pub(super) fn peaks(timeline: &[SecondSample], from: f64, to: f64) -> (u32, u32) {
    timeline
        .iter()
        .filter(|sample| sample.t > from && sample.t < to + 1.0)
        .filter_map(|sample| sample.pool)
        .fold((0, 0), |(in_use, waiters), pool| {
            (in_use.max(pool.in_use), waiters.max(pool.waiters))
        })
}

/// What the verdicts are judged on, for `stats` between two scrapes.
pub(super) fn measured(
    stats: &Stats,
    start: Option<&Metrics>,
    end: Option<&Metrics>,
    pool: &str,
) -> Measured {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::ramp::RampReport;
    use crate::load::record;
    use crate::load::report::PoolSample;

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
