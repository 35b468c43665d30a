//! [`LoadConfig`]: what a load run is, its defaults, and the checks the
//! flags cannot make one by one.

use std::time::Duration;

use super::ramp::{self, Ramp};
use super::slo::Slos;
use super::users::Scenario;
use crate::service::{SpawnOptions, Target};

/// Longest a run bounded only by a request budget may last.
pub const REQUESTS_ONLY_CAP: Duration = Duration::from_secs(3600);
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
    /// Draw a progress bar on standard error (when it is a terminal). The
    /// run's notes are `tracing` events, whatever this says.
    pub progress: bool,
    /// The command line, for the report.
    pub command: String,
    /// Stop on SIGINT or SIGTERM: drop the users, stop a spawned service
    /// properly, and return [`LoadError::Interrupted`](super::LoadError::Interrupted). Off by default: a
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
    pub(super) fn phases(&self) -> Vec<(u32, Duration)> {
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
}
