//! The circuit breaker, and the pacing of connection attempts behind it.
//!
//! Every failed attempt pushes the next one back, for all of the pool's
//! openers together, by a [`Backoff::spaced_delay`] that grows with the
//! failures in a row (never shorter than half its ceiling, so the attempts
//! in a window are bounded: [`Backoff::most_attempts_within`]). While callers wait and the failure says the database is down or
//! full for now ([`Pacing::Soon`]), the next attempt comes sooner: within
//! `connect_backoff.initial` of the failure, so that the database's return
//! is noticed at once; permanent errors and connections that arrived broken
//! ([`Pacing::Backoff`]) always wait the full backoff.
//!
//! After `breaker.failure_threshold` failures in a row, over at least
//! `connect_backoff.max` (the outage outlasted the whole backoff range; a
//! permanent error needs no such wait), the breaker opens, when the pool
//! has nothing left to give: no idle connection (the database is down), or
//! for a full server ([`ErrorClass::Full`]) no open connection at all (the
//! connections it has still work, and callers wait for them). A restart
//! that takes a few hundred milliseconds is thus ridden out by the callers
//! waiting for it, while a longer outage fails them fast. While it is open a single opener keeps probing; a caller
//! that arrives either waits for the next probe (while probes answer
//! quickly and the failure is worth retrying soon) or fails at once with
//! [`Error::Unavailable`](crate::Error::Unavailable). Any sign that the
//! database is back closes it: a probe that connects, or a connection
//! that comes back healthy.

use std::time::Duration;

use crate::backoff::Backoff;
use crate::error::ConnectError;
use crate::manager::ErrorClass;
use crate::rt::Instant;

/// How soon a failed attempt may be followed by the next one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pacing {
    /// Down or full for now: with callers waiting, retry within
    /// `connect_backoff.initial`.
    Soon,
    /// Retrying quickly cannot help (a permanent error, a connection that
    /// arrived broken): always the full backoff.
    Backoff,
}

/// What the pool holds when an attempt fails: whether callers could still
/// be served without a new connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Holding {
    pub(crate) idle: bool,
    pub(crate) open: bool,
}

pub(crate) struct Breaker {
    enabled: bool,
    threshold: u32,
    backoff: Backoff,
    failures: u32,
    /// When the first of the failures in a row happened.
    failing_since: Option<Instant>,
    last_error: Option<ConnectError>,
    pacing: Pacing,
    /// No attempt may start before this (the backoff).
    next_attempt: Option<Instant>,
    /// With callers waiting, after a [`Pacing::Soon`] failure, an attempt
    /// may start from this.
    next_attempt_on_demand: Option<Instant>,
    open: bool,
    /// Attempts started so far.
    attempts: u64,
    /// When the probe under way while open started.
    probe_started: Option<Instant>,
}

impl Breaker {
    pub(crate) fn new(enabled: bool, threshold: u32, backoff: Backoff) -> Self {
        Self {
            enabled,
            threshold,
            backoff,
            failures: 0,
            failing_since: None,
            last_error: None,
            pacing: Pacing::Backoff,
            next_attempt: None,
            next_attempt_on_demand: None,
            open: false,
            attempts: 0,
            probe_started: None,
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open
    }

    /// Consecutive failed attempts.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// The latest failure, while attempts keep failing.
    pub(crate) fn last_error(&self) -> Option<&ConnectError> {
        self.last_error.as_ref()
    }

    /// Attempts started so far: a waiter remembers the count when it
    /// joins, so that only a failure it has not seen before fails it.
    pub(crate) fn attempts(&self) -> u64 {
        self.attempts
    }

    /// No attempt may start before this; `demand` when callers wait.
    pub(crate) fn next_attempt(&self, demand: bool) -> Option<Instant> {
        match (self.next_attempt, self.next_attempt_on_demand) {
            (Some(backoff), Some(soon)) if demand => Some(backoff.min(soon)),
            (next, _) => next,
        }
    }

    /// An attempt starts now; returns its number.
    pub(crate) fn start_attempt(&mut self, now: Instant) -> u64 {
        self.attempts += 1;
        if self.open {
            self.probe_started = Some(now);
        }
        self.attempts
    }

    /// Whether a caller arriving while the breaker is open may wait for the
    /// next probe instead of failing at once: the failures are worth
    /// retrying soon, and no probe has been stuck for longer than the
    /// largest backoff (a database that does not answer at all).
    pub(crate) fn admits_waiters(&self, now: Instant) -> bool {
        self.pacing == Pacing::Soon
            && self
                .probe_started
                .is_none_or(|started| now.saturating_duration_since(started) < self.backoff.max)
    }

    /// Records a failed attempt; `true` when this failure opened the breaker.
    pub(crate) fn on_failure(
        &mut self,
        error: ConnectError,
        pacing: Pacing,
        now: Instant,
        holding: Holding,
    ) -> bool {
        let class = error.class();
        let nothing_to_give = match class {
            ErrorClass::Full => !holding.open,
            ErrorClass::Transient | ErrorClass::Permanent => !holding.idle,
        };
        let since = *self.failing_since.get_or_insert(now);
        let outlasted_backoff = class == ErrorClass::Permanent
            || now.saturating_duration_since(since) >= self.backoff.max;
        self.failures = self.failures.saturating_add(1);
        self.last_error = Some(error);
        self.pacing = pacing;
        self.probe_started = None;
        self.next_attempt = Some(now + self.backoff.spaced_delay(self.failures));
        self.next_attempt_on_demand = (pacing == Pacing::Soon).then(|| {
            // Equal jitter: soon, but not in step with other pools.
            now + self.backoff.initial.mul_f64(0.5 + 0.5 * fastrand::f64())
        });
        let opens = self.enabled
            && !self.open
            && nothing_to_give
            && outlasted_backoff
            && self.failures >= self.threshold;
        self.open |= opens;
        opens
    }

    /// The database is back (a connection opened and proved usable, or one
    /// came back healthy): everything is forgotten. `true` when this closed
    /// the breaker.
    pub(crate) fn on_success(&mut self) -> bool {
        let was_open = self.open;
        *self = Self {
            attempts: self.attempts,
            ..Self::new(self.enabled, self.threshold, self.backoff)
        };
        was_open
    }

    /// A connection opened but is not proven yet (it is validated before
    /// its first use): the breaker closes, but the failures in a row are
    /// kept, so that connections failing their first validation still back
    /// off. After failures that retrying soon cannot help (connections that
    /// arrived broken), the next attempt also waits as if this one had
    /// failed: it may well break like the ones before it, and attempts stay
    /// spaced. `true` when this closed the breaker.
    pub(crate) fn on_unproven(&mut self, now: Instant) -> bool {
        let was_open = self.open;
        self.open = false;
        self.probe_started = None;
        if self.pacing == Pacing::Backoff && self.failures > 0 {
            self.next_attempt = Some(now + self.backoff.spaced_delay(self.failures));
        }
        was_open
    }

    /// Time until the next attempt: the retry hint while open. While an
    /// attempt is already under way, at least the shortest backoff.
    pub(crate) fn retry_after(&self, now: Instant, demand: bool) -> Duration {
        let until_next = self
            .next_attempt(demand)
            .map_or(Duration::ZERO, |at| at.saturating_duration_since(now));
        until_next.max(self.backoff.initial)
    }
}

#[cfg(all(test, not(tidewater_shuttle)))]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        let backoff = Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(500),
        };
        Breaker::new(true, 3, backoff)
    }

    fn error(class: ErrorClass) -> ConnectError {
        ConnectError::new(std::io::Error::other("refused"), class)
    }

    const NOTHING: Holding = Holding {
        idle: false,
        open: false,
    };

    /// Three transient failures over the largest backoff (500 ms), from
    /// `start`: enough to open the breaker. Returns the last one's time.
    fn fail_three_times(breaker: &mut Breaker, pacing: Pacing, start: Instant) -> Instant {
        let mut at = start;
        for step in 0..3 {
            at = start + Duration::from_millis(250 * step);
            breaker.on_failure(error(ErrorClass::Transient), pacing, at, NOTHING);
        }
        at
    }

    #[test]
    fn opens_after_the_threshold_with_nothing_to_give() {
        let mut breaker = breaker();
        let now = Instant::now();
        let busy = Holding {
            idle: false,
            open: true,
        };
        for _ in 0..3 {
            assert!(!breaker.on_failure(error(ErrorClass::Full), Pacing::Soon, now, busy));
        }
        assert!(
            !breaker.is_open(),
            "a full server while connections are open: callers wait"
        );
        let later = now + Duration::from_millis(499);
        assert!(
            !breaker.on_failure(error(ErrorClass::Transient), Pacing::Soon, later, busy),
            "down for less than the largest backoff: callers still wait"
        );
        let later = now + Duration::from_millis(500);
        assert!(breaker.on_failure(error(ErrorClass::Transient), Pacing::Soon, later, busy));
        assert!(breaker.on_success());
        assert_eq!(breaker.failures(), 0);
    }

    #[test]
    fn a_permanent_error_opens_it_without_waiting_out_the_backoff() {
        let mut breaker = breaker();
        let now = Instant::now();
        for _ in 0..2 {
            breaker.on_failure(error(ErrorClass::Permanent), Pacing::Backoff, now, NOTHING);
        }
        assert!(breaker.on_failure(error(ErrorClass::Permanent), Pacing::Backoff, now, NOTHING));
    }

    #[test]
    fn callers_pull_the_next_attempt_in_only_after_soon_failures() {
        let mut breaker = breaker();
        let now = Instant::now();
        for _ in 0..6 {
            breaker.on_failure(error(ErrorClass::Transient), Pacing::Soon, now, NOTHING);
        }
        let soon = breaker.next_attempt(true).unwrap();
        assert!(soon <= now + Duration::from_millis(10) && soon >= now + Duration::from_millis(5));
        assert!(breaker.next_attempt(false).unwrap() >= soon);
        assert!(breaker.admits_waiters(now));

        breaker.on_failure(error(ErrorClass::Permanent), Pacing::Backoff, now, NOTHING);
        assert_eq!(breaker.next_attempt(true), breaker.next_attempt(false));
        assert!(
            !breaker.admits_waiters(now),
            "a permanent error fails callers at once"
        );
    }

    #[test]
    fn a_stuck_probe_stops_admitting_waiters() {
        let mut breaker = breaker();
        let now = fail_three_times(&mut breaker, Pacing::Soon, Instant::now());
        assert!(breaker.is_open());
        assert_eq!(breaker.start_attempt(now), 1);
        assert!(breaker.admits_waiters(now + Duration::from_millis(499)));
        assert!(!breaker.admits_waiters(now + Duration::from_millis(500)));
    }

    #[test]
    fn an_unproven_connection_closes_but_keeps_the_streak() {
        let mut breaker = breaker();
        let now = fail_three_times(&mut breaker, Pacing::Backoff, Instant::now());
        assert!(breaker.is_open());
        let later = now + Duration::from_secs(1);
        assert!(breaker.on_unproven(later));
        assert!(!breaker.is_open());
        assert_eq!(breaker.failures(), 3);
        let next = breaker.next_attempt(true).expect("paced");
        assert!(
            next >= later + Duration::from_millis(20),
            "spaced as after a failure"
        );
        assert!(
            breaker.on_failure(
                error(ErrorClass::Transient),
                Pacing::Backoff,
                later,
                NOTHING
            ),
            "the next failure opens it again"
        );
    }
}
