//! Retry delays: exponential growth with full jitter.
//!
//! The n-th consecutive failure waits a random time between zero and
//! `initial * 2^(n-1)`, capped at `max`. Full jitter spreads the retries of
//! many pools (or many processes) over the whole window, so a database that
//! comes back is not hit by all of them at once.

use std::time::Duration;

/// Delays for retries: exponential, capped, with full jitter. The pool
/// paces its connection attempts with it; backends use it for their own
/// retries (a transaction that hit a serialization failure, say).
///
/// ```
/// use std::time::Duration;
/// use tidewater::Backoff;
///
/// let backoff = Backoff { initial: Duration::from_millis(10), max: Duration::from_secs(1) };
/// assert_eq!(backoff.ceiling(3), Duration::from_millis(40));
/// assert!(backoff.delay(3) <= Duration::from_millis(40));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling of the first delay.
    pub initial: Duration,
    /// Largest ceiling.
    pub max: Duration,
}

impl Backoff {
    /// The largest delay after `failures` consecutive failures.
    pub fn ceiling(self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.initial.saturating_mul(1 << doublings).min(self.max)
    }

    /// A random delay in `0..=ceiling(failures)`.
    pub fn delay(self, failures: u32) -> Duration {
        self.ceiling(failures).mul_f64(fastrand::f64())
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
}
