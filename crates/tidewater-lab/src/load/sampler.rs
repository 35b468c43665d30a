//! The run's clock: every second, the users' requests of that second
//! (from the recorder), the pool (`/api/pools`), the spawned service's
//! memory, and the progress bar.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::probe::pool_status;
use super::progress::Progress;
use super::record::Tally;
use super::report::SecondSample;
use super::slo;
use super::users::Shared;
use crate::service::memory_of;

/// Longest the sampler waits for `/api/pools`.
const SAMPLE_TIMEOUT: Duration = Duration::from_millis(800);

/// The phase the sampler reports progress for.
struct PhaseView {
    label: String,
    started: Instant,
    /// Progress counts requests (a budget) rather than seconds.
    by_requests: bool,
    requests: u64,
    errors: u64,
}

impl PhaseView {
    fn new(label: String, started: Instant, by_requests: bool) -> Self {
        Self {
            label,
            started,
            by_requests,
            requests: 0,
            errors: 0,
        }
    }
}

/// Every second: the recorder's second, the pool (`/api/pools`), the
/// service's memory; and the progress bar.
pub(super) struct Sampler {
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

/// What the sampler's task reads and writes each second.
struct Ticker {
    shared: Arc<Shared>,
    /// The pool's name in `/api/pools`.
    pool: String,
    /// The spawned service's process, whose memory is sampled.
    pid: Option<u32>,
    started: Instant,
    progress: Arc<Progress>,
    timeline: Arc<Mutex<Vec<SecondSample>>>,
    users: Arc<AtomicU32>,
    phase: Arc<Mutex<PhaseView>>,
}

impl Ticker {
    /// Samples every second from `started` until `stopped`.
    async fn run(self, mut stopped: oneshot::Receiver<()>) {
        let second = Duration::from_secs(1);
        let mut ticks = tokio::time::interval_at(self.started + second, second);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = &mut stopped => break,
            }
            let sample = self.sample().await;
            self.timeline
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(sample);
        }
    }

    /// The second just ended, with the bar moved on.
    async fn sample(&self) -> SecondSample {
        let tally = self.shared.recorder.take_second();
        let t = self.started.elapsed().as_secs_f64();
        // Within the second, so that the next one is not late.
        let pool = pool_status(
            &self.shared.client,
            &self.shared.base,
            Some(&self.pool),
            SAMPLE_TIMEOUT,
        )
        .await
        .ok()
        .map(|(_, sample)| sample);
        let sample = SecondSample {
            t,
            users: self.users.load(Ordering::Relaxed),
            requests: tally.requests,
            errors: tally.errors,
            unavailable: tally.unavailable,
            latency_p50: tally.latency.quantile(0.5),
            latency_p99: tally.latency.quantile(0.99),
            pool,
            rss_bytes: self.pid.and_then(memory_of).map(|memory| memory.rss_bytes),
        };
        self.show(&tally, &sample);
        sample
    }

    /// Moves the bar to the phase's seconds (or requests) so far, with the
    /// second's numbers.
    fn show(&self, tally: &Tally, sample: &SecondSample) {
        let mut view = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        view.requests += tally.requests;
        view.errors += tally.errors;
        let position = if view.by_requests {
            view.requests
        } else {
            view.started.elapsed().as_secs()
        };
        self.progress.update(
            position,
            format!(
                "{} req/s · {} errors · p99 {}{}",
                tally.requests,
                view.errors,
                slo::seconds(sample.latency_p99),
                sample.pool.map_or(String::new(), |p| format!(
                    " · pool {}/{} in use, {} waiting",
                    p.in_use, p.max_size, p.waiters
                ))
            ),
        );
    }
}

impl Sampler {
    /// Starts sampling every second from `started`: the pool named `pool`,
    /// the memory of process `pid`.
    pub(super) fn start(
        shared: Arc<Shared>,
        pool: String,
        pid: Option<u32>,
        started: Instant,
        progress: Arc<Progress>,
    ) -> Self {
        let ticker = Ticker {
            shared,
            pool,
            pid,
            started,
            progress,
            timeline: Arc::new(Mutex::new(Vec::new())),
            users: Arc::new(AtomicU32::new(0)),
            phase: Arc::new(Mutex::new(PhaseView::new(String::new(), started, false))),
        };
        let (timeline, users, phase) = (
            ticker.timeline.clone(),
            ticker.users.clone(),
            ticker.phase.clone(),
        );
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(ticker.run(stopped));
        Self {
            timeline,
            users,
            phase,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A new phase for the progress bar, of `users` users.
    pub(super) fn begin(&self, label: String, users: u32, by_requests: bool) {
        self.users.store(users, Ordering::Relaxed);
        let mut view = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        *view = PhaseView::new(label, Instant::now(), by_requests);
    }

    /// The users are done: the samples from now on count none.
    pub(super) fn end_phase(&self) {
        self.users.store(0, Ordering::Relaxed);
    }

    /// The label of the phase under way.
    pub(super) fn label(&self) -> String {
        self.phase
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .label
            .clone()
    }

    /// The samples taken so far.
    pub(super) fn samples(&self) -> Vec<SecondSample> {
        self.timeline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops sampling and returns every sample.
    pub(super) async fn finish(mut self) -> Vec<SecondSample> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        std::mem::take(&mut *self.timeline.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
