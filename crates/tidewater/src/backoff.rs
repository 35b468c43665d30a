//! Retry delays: exponential growth with jitter.
//!
//! The n-th consecutive failure has a ceiling of `initial * 2^(n-1)`,
//! capped at `max`. Retries of a query or a webhook wait a random time
//! below it (full jitter: the retries of many callers spread over the whole
//! window). The pool's connection attempts wait between half the ceiling
//! and the ceiling (equal jitter): still spread, so that a database that
//! comes back is not hit by every pool at once, and never closer together
//! than half the ceiling, so the number of attempts in any window has a
//! bound that follows from the configuration ([`Backoff::most_attempts_within`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Delays for retries: exponential, capped, jittered. The pool spaces its
/// connection attempts with it ([`Backoff::spaced_delay`]; the
/// `[connect_backoff]` table of a [`PoolConfig`](crate::PoolConfig)); backends use it
/// for their own retries ([`Backoff::delay`]: a transaction that hit a
/// serialization failure, say).
///
/// ```
/// use std::time::Duration;
/// use tidewater::Backoff;
///
/// let backoff = Backoff { initial: Duration::from_millis(10), max: Duration::from_secs(1) };
/// assert_eq!(backoff.ceiling(3), Duration::from_millis(40));
/// assert!(backoff.delay(3) <= Duration::from_millis(40));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Backoff {
    /// Ceiling of the first delay.
    #[serde(with = "crate::config::duration")]
    pub initial: Duration,
    /// Largest ceiling.
    #[serde(with = "crate::config::duration")]
    pub max: Duration,
}

/// The pool's connection attempts' (`connect_backoff`): 10 ms, doubling up
/// to 500 ms.
///
/// ```
/// let backoff = tidewater::Backoff::default();
/// assert_eq!(backoff.ceiling(1), std::time::Duration::from_millis(10));
/// assert_eq!(backoff, tidewater::PoolConfig::default().connect_backoff);
/// ```
impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(500),
        }
    }
}

impl Backoff {
    /// The largest delay after `failures` consecutive failures.
    pub fn ceiling(self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.initial.saturating_mul(1 << doublings).min(self.max)
    }

    /// A random delay in `0..=ceiling(failures)` (full jitter).
    pub fn delay(self, failures: u32) -> Duration {
        self.ceiling(failures).mul_f64(fastrand::f64())
    }

    /// A random delay between half of `ceiling(failures)` and all of it
    /// (equal jitter): how the pool spaces its connection attempts.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let backoff = tidewater::Backoff { initial: Duration::from_millis(10), max: Duration::from_secs(1) };
    /// let delay = backoff.spaced_delay(3);
    /// assert!(delay >= Duration::from_millis(20) && delay <= Duration::from_millis(40));
    /// ```
    pub fn spaced_delay(self, failures: u32) -> Duration {
        self.ceiling(failures).mul_f64(0.5 + 0.5 * fastrand::f64())
    }

    /// The most attempts a sequence spaced by [`Backoff::spaced_delay`]
    /// can start within `window`, the first at its start: each failure
    /// raises the ceiling, and no delay is shorter than half of it. For a
    /// pool, with `max_connecting` at a time:
    /// [`PoolConfig::most_connect_attempts_within`](crate::PoolConfig::most_connect_attempts_within).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let backoff = tidewater::Backoff { initial: Duration::from_millis(10), max: Duration::from_millis(500) };
    /// // At 0, then at least 5, 10, 20, 40, 80, 160, 250, 250 ... ms apart.
    /// assert_eq!(backoff.most_attempts_within(Duration::from_secs(2)), 13);
    /// ```
    pub fn most_attempts_within(self, window: Duration) -> u32 {
        let mut attempts = 1;
        let mut elapsed = Duration::ZERO;
        loop {
            elapsed += self.ceiling(attempts) / 2;
            if elapsed > window || attempts == u32::MAX {
                return attempts;
            }
            attempts += 1;
        }
    }
}

/// How often, and how patiently, a backend's transaction helper retries a
/// transaction that met a conflict (serialization failure, deadlock, lock
/// timeout, busy database).
///
/// ```
/// let policy = tidewater::RetryPolicy::default();
/// assert_eq!(policy.max_attempts, 5);
/// assert!(policy.backoff.delay(1) <= std::time::Duration::from_millis(10));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The delay before each retry (the n-th retry follows `delay(n)`).
    pub backoff: Backoff,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff: Backoff {
                initial: Duration::from_millis(10),
                max: Duration::from_secs(1),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        let backoff = Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(2),
        };
        let ceilings: Vec<u64> = (1..=8)
            .map(|n| backoff.ceiling(n).as_millis() as u64)
            .collect();
        assert_eq!(ceilings, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(2));
    }

    #[test]
    fn delays_are_spread_below_the_ceiling() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
        };
        let delays: Vec<Duration> = (0..200).map(|_| backoff.delay(4)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(800)));
        assert!(delays.iter().any(|d| *d < Duration::from_millis(200)));
        assert!(delays.iter().any(|d| *d > Duration::from_millis(600)));
    }

    #[test]
    fn spaced_delays_keep_at_least_half_the_ceiling() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
        };
        let delays: Vec<Duration> = (0..200).map(|_| backoff.spaced_delay(4)).collect();
        let allowed = Duration::from_millis(400)..=Duration::from_millis(800);
        assert!(delays.iter().all(|d| allowed.contains(d)));
        assert!(delays.iter().any(|d| *d < Duration::from_millis(500)));
        assert!(delays.iter().any(|d| *d > Duration::from_millis(700)));
    }

    #[test]
    fn the_attempts_in_a_window_are_counted_from_the_shortest_delays() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(400),
        };
        // Attempts at 0, 50, 150, 350, 550, 750, 950 ... ms.
        let within = |ms| backoff.most_attempts_within(Duration::from_millis(ms));
        assert_eq!(within(0), 1);
        assert_eq!(within(49), 1);
        assert_eq!(within(50), 2);
        assert_eq!(within(349), 3);
        assert_eq!(within(350), 4);
        assert_eq!(within(1_000), 7);
    }
}
