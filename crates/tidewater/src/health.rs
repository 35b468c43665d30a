//! Health: is a pool well, and can the service serve?
//!
//! A pool's report ([`Pool::health`]) runs six checks, each with its
//! status and the reason for it:
//!
//! | check | healthy | degraded | unhealthy |
//! |---|---|---|---|
//! | `acquire` | a connection was acquired and validated within `validation_timeout` | | it was not (the reason says why) |
//! | `breaker` | closed | | open: the database cannot be reached |
//! | `utilization` | in use below `alerts.utilization_threshold` of `max_size` | at or above it | |
//! | `wait_p99` | recent p99 acquisition wait within `expected_wait_p99` | above it | |
//! | `leaks` | no leak suspect | connections held past `leak_detection_threshold` | |
//! | `fleet` | coordinated with its [fleet](crate::fleet), or in none | coordination lost: on a fallback share | |
//!
//! The pool's status is its worst check's. For a service, [`ServiceHealth`]
//! keeps liveness and readiness apart, as Kubernetes expects: a database
//! outage makes the service not ready, never not live.
//!
//! The JSON schema is documented in `docs/health.md`.

use std::sync::Arc;

use serde::Serialize;

use crate::alerts::Alert;
use crate::config::SizingMode;
use crate::fleet::{FleetState, FleetStatus};
use crate::leaks::LeakSuspect;
use crate::manager::Manager;
use crate::pool::Pool;
use crate::rt::{self, Instant};
use crate::sizing::SizingReport;
use crate::stats::PoolStatus;

/// How well something is.
///
/// ```
/// use tidewater::health::HealthStatus;
/// assert!(HealthStatus::Unhealthy > HealthStatus::Degraded);
/// assert_eq!(serde_json::to_string(&HealthStatus::Degraded).unwrap(), "\"degraded\"");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// All is well.
    Healthy,
    /// It serves, but something needs attention.
    Degraded,
    /// It cannot serve.
    Unhealthy,
}

/// One check's verdict and the reason for it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HealthCheck {
    /// `acquire`, `breaker`, `utilization`, `wait_p99`, `leaks` or `fleet`.
    pub name: &'static str,
    /// Its verdict.
    pub status: HealthStatus,
    /// Why, with the numbers.
    pub reason: String,
}

impl HealthCheck {
    fn new(name: &'static str, status: HealthStatus, reason: String) -> Self {
        Self {
            name,
            status,
            reason,
        }
    }

    /// The `fleet` check of a pool's last fleet status ([`Pool::fleet`]):
    /// healthy in no fleet or coordinated with it, degraded while the
    /// coordination is lost and the pool runs on a fallback share (its
    /// grant).
    ///
    /// ```
    /// use tidewater::fleet::{FleetState, FleetStatus};
    /// use tidewater::health::{HealthCheck, HealthStatus};
    /// assert_eq!(HealthCheck::of_fleet(None).status, HealthStatus::Healthy);
    /// let lost = FleetStatus {
    ///     fleet: "bank".into(),
    ///     member: "5f0c1a2b".into(),
    ///     state: FleetState::Degraded,
    ///     reason: Some("connection refused".into()),
    ///     grant: 8,
    ///     budget: 33,
    ///     members: Vec::new(),
    /// };
    /// let check = HealthCheck::of_fleet(Some(&lost));
    /// assert_eq!(check.status, HealthStatus::Degraded);
    /// assert_eq!(
    ///     check.reason,
    ///     "fleet coordination lost: connection refused; on a fallback share of 8 connections"
    /// );
    /// ```
    pub fn of_fleet(status: Option<&FleetStatus>) -> Self {
        match status {
            None => Self::new("fleet", HealthStatus::Healthy, "in no fleet".to_owned()),
            Some(status) if status.state == FleetState::Coordinated => Self::new(
                "fleet",
                HealthStatus::Healthy,
                format!(
                    "coordinated in fleet {}: a grant of {} of its {} connections, {} live member(s)",
                    status.fleet,
                    status.grant,
                    status.budget,
                    status.members.len()
                ),
            ),
            Some(status) => Self::new(
                "fleet",
                HealthStatus::Degraded,
                format!(
                    "fleet coordination lost: {}; on a fallback share of {} connections",
                    status.reason.as_deref().unwrap_or("reason unknown"),
                    status.grant
                ),
            ),
        }
    }
}

/// A pool's health report.
#[derive(Clone, Debug, Serialize)]
pub struct PoolHealth {
    /// The pool's name.
    pub pool: Arc<str>,
    /// The worst of its checks.
    pub status: HealthStatus,
    /// Every check, in a fixed order.
    pub checks: Vec<HealthCheck>,
    /// The pool's numbers when the report was made.
    pub state: PoolStatus,
    /// Its limit on connections in use, and why it is where it is.
    pub sizing: SizingReport,
    /// Connections held past the leak threshold, longest first.
    pub leak_suspects: Vec<LeakSuspect>,
    /// Alerts firing.
    pub alerts: Vec<Alert>,
    /// Its place in its fleet, as its coordinator last reported it
    /// ([`Pool::fleet`]); `None` (`null`) in no fleet.
    pub fleet: Option<FleetStatus>,
}

/// A service's health over all its pools.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # use tidewater_testkit::ScriptedManager;
/// use tidewater::health::{HealthStatus, ServiceHealth};
/// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
/// let service = ServiceHealth::of(vec![pool.health().await]);
/// assert!(service.live && service.ready);
/// assert_eq!(service.status, HealthStatus::Healthy);
/// # }
/// ```
#[derive(Clone, Debug, Serialize)]
pub struct ServiceHealth {
    /// The worst of the pools' statuses.
    pub status: HealthStatus,
    /// The process works: always `true` when it can answer at all.
    pub live: bool,
    /// It can serve: no pool is unhealthy.
    pub ready: bool,
    /// Each pool's report.
    pub pools: Vec<PoolHealth>,
}

impl ServiceHealth {
    /// Combines pool reports.
    pub fn of(pools: Vec<PoolHealth>) -> Self {
        let status = pools
            .iter()
            .map(|pool| pool.status)
            .max()
            .unwrap_or(HealthStatus::Healthy);
        Self {
            status,
            live: true,
            ready: status != HealthStatus::Unhealthy,
            pools,
        }
    }
}

impl<M: Manager> Pool<M> {
    /// Checks the pool's health: a connection is acquired and validated (at
    /// most `validation_timeout`), and its numbers are compared with their
    /// thresholds. See the [module documentation](crate::health).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tidewater_testkit::ScriptedManager;
    /// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
    /// let health = pool.health().await;
    /// assert_eq!(health.status, tidewater::health::HealthStatus::Healthy);
    /// assert_eq!(health.checks[0].name, "acquire");
    /// # }
    /// ```
    pub async fn health(&self) -> PoolHealth {
        let config = &self.shared.config;
        let acquire = self.probe().await;
        let state = self.status();
        let sizing = self.sizing();
        let stats = self.stats();
        let leak_suspects = self.leak_suspects();
        let fleet = self.fleet();

        let breaker = if state.breaker_open {
            let cause = self
                .lock()
                .breaker
                .last_error()
                .map_or_else(String::new, |e| format!(": {e}"));
            HealthCheck::new(
                "breaker",
                HealthStatus::Unhealthy,
                format!("open, the database cannot be reached{cause}"),
            )
        } else {
            HealthCheck::new("breaker", HealthStatus::Healthy, "closed".to_owned())
        };

        let share = f64::from(state.in_use) / f64::from(state.max_size.max(1));
        let busy = share >= config.alerts.utilization_threshold;
        let utilization = HealthCheck::new(
            "utilization",
            if busy {
                HealthStatus::Degraded
            } else {
                HealthStatus::Healthy
            },
            format!(
                "{} of {} connections in use ({:.0}%), {} waiting{}",
                state.in_use,
                state.max_size,
                share * 100.0,
                state.waiters,
                limit_note(&sizing),
            ),
        );

        let p99 = self
            .monitor()
            .window
            .recent(&stats)
            .wait_time
            .quantile(0.99);
        let slow = p99 > config.expected_wait_p99;
        let wait_p99 = HealthCheck::new(
            "wait_p99",
            if slow {
                HealthStatus::Degraded
            } else {
                HealthStatus::Healthy
            },
            format!(
                "recent p99 acquisition wait {p99:?}, expected at most {:?}",
                config.expected_wait_p99
            ),
        );

        let leaks = match leak_suspects.first() {
            None => HealthCheck::new(
                "leaks",
                HealthStatus::Healthy,
                "no connection held too long".to_owned(),
            ),
            Some(longest) => HealthCheck::new(
                "leaks",
                HealthStatus::Degraded,
                format!(
                    "{} connection(s) held too long; longest: {longest}",
                    leak_suspects.len()
                ),
            ),
        };

        let checks = vec![
            acquire,
            breaker,
            utilization,
            wait_p99,
            leaks,
            HealthCheck::of_fleet(fleet.as_ref()),
        ];
        let status = checks
            .iter()
            .map(|check| check.status)
            .max()
            .unwrap_or(HealthStatus::Healthy);
        PoolHealth {
            pool: self.shared.name.clone(),
            status,
            checks,
            state,
            sizing,
            leak_suspects,
            alerts: self.alerts(),
            fleet,
        }
    }

    /// Acquires and validates a connection within `validation_timeout`.
    async fn probe(&self) -> HealthCheck {
        let limit = self.shared.config.validation_timeout;
        let start = Instant::now();
        let outcome = rt::timeout_at(start + limit, async {
            let mut conn = self.get().await.map_err(|error| error.to_string())?;
            conn.validate_now().await
        })
        .await;
        match outcome {
            Some(Ok(())) => HealthCheck::new(
                "acquire",
                HealthStatus::Healthy,
                format!(
                    "acquired and validated a connection in {:?}",
                    start.elapsed()
                ),
            ),
            Some(Err(error)) => HealthCheck::new("acquire", HealthStatus::Unhealthy, error),
            None => HealthCheck::new(
                "acquire",
                HealthStatus::Unhealthy,
                format!("no connection acquired and validated within {limit:?}"),
            ),
        }
    }
}

/// The adaptive limit, for the utilization check's reason.
fn limit_note(sizing: &SizingReport) -> String {
    match sizing.mode {
        SizingMode::Fixed => String::new(),
        SizingMode::Adaptive => format!(
            ", adaptive limit {} ({})",
            sizing.limit,
            sizing.reason.as_str()
        ),
    }
}
