//! [`Schedule`]: faults one after another, each in its own phase of a
//! [`PhaseRecorder`], with the wait for the recovery and a calm stretch
//! after it.

use std::time::{Duration, Instant};

use tidewater_testkit::PgCluster;

use super::{Fault, FaultError, PhaseRecorder, inject};

/// Faults run one after another, each in a phase of its own, against a
/// cluster while the caller's load records into a [`PhaseRecorder`].
///
/// [`run`](Self::run) begins a `baseline` phase of [`baseline`](Self::baseline),
/// then for each fault a phase named after it: inject it (holding it
/// [`hold`](Self::hold)), wait until a request started after the
/// database's return has succeeded (at most
/// [`recovery_deadline`](Self::recovery_deadline)), then keep the load
/// going [`settle`](Self::settle) longer, so the phase also shows the
/// steady state after the recovery.
///
/// ```
/// use std::time::Duration;
/// use tidewater_lab::faults::{Fault, Schedule};
///
/// let schedule = Schedule::default();
/// assert_eq!(schedule.faults, Fault::ALL);
/// assert_eq!(schedule.hold, Duration::from_secs(3));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// The faults, in order.
    pub faults: Vec<Fault>,
    /// How long each fault that [`holds`](Fault::holds) lasts.
    pub hold: Duration,
    /// The steady phase before the first fault.
    pub baseline: Duration,
    /// How long the load keeps going in a fault's phase once it has
    /// recovered.
    pub settle: Duration,
    /// The longest a phase waits for the first success after the database
    /// is back; the phase goes on without a recovery after it.
    pub recovery_deadline: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            faults: Fault::ALL.to_vec(),
            hold: Duration::from_secs(3),
            baseline: Duration::from_secs(2),
            settle: Duration::from_secs(2),
            recovery_deadline: Duration::from_secs(30),
        }
    }
}

impl Schedule {
    /// Runs the schedule against `cluster`, recording phases into
    /// `recorder`, and ends its last phase. Requests are the caller's: it
    /// starts its load (recording into `recorder`) before, and stops it
    /// after; then [`PhaseRecorder::stats`] gives each phase's figures.
    ///
    /// # Errors
    /// When a fault cannot be injected (see [`inject`]); the phases so far
    /// stay in `recorder`, the last one ended.
    pub async fn run(
        &self,
        cluster: &PgCluster,
        recorder: &PhaseRecorder,
    ) -> Result<(), FaultError> {
        recorder.begin_phase("baseline", None);
        tokio::time::sleep(self.baseline).await;
        for &fault in &self.faults {
            recorder.begin_phase(fault.name(), None);
            let window = match inject(cluster, fault, self.hold).await {
                Ok(window) => window,
                Err(error) => {
                    recorder.end();
                    return Err(error);
                }
            };
            let restored_at = window.restored_at;
            recorder.set_window(window);
            let deadline = restored_at + self.recovery_deadline;
            while recorder.first_success_since(restored_at).is_none() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(self.settle).await;
        }
        recorder.end();
        Ok(())
    }
}
