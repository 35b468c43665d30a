//! The circuit breaker, and the pacing of connection attempts behind it.
//!
//! Every failed attempt pushes the next one back by a [`Backoff`] delay,
//! for all of the pool's openers together. After `breaker_failure_threshold`
//! failures in a row with no idle connection left, the breaker opens:
//! `get()` calls that would have to wait fail at once with
//! [`Error::Unavailable`](crate::Error::Unavailable), and a single opener
//! keeps probing the database at the backoff pace. The first successful
//! attempt closes it.

use std::time::Duration;

use crate::backoff::Backoff;
use crate::error::ConnectError;
use crate::rt::Instant;

pub(crate) struct Breaker {
    enabled: bool,
    threshold: u32,
    backoff: Backoff,
    failures: u32,
    last_error: Option<ConnectError>,
    next_attempt: Option<Instant>,
    open: bool,
}

impl Breaker {
    pub(crate) fn new(enabled: bool, threshold: u32, backoff: Backoff) -> Self {
        Self {
            enabled,
            threshold,
            backoff,
            failures: 0,
            last_error: None,
            next_attempt: None,
            open: false,
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

    /// No attempt may start before this.
    pub(crate) fn next_attempt(&self) -> Option<Instant> {
        self.next_attempt
    }

    /// Records a failed attempt; `true` when this failure opened the breaker.
    pub(crate) fn on_failure(
        &mut self,
        error: ConnectError,
        now: Instant,
        idle_left: bool,
    ) -> bool {
        self.failures = self.failures.saturating_add(1);
        self.last_error = Some(error);
        self.next_attempt = Some(now + self.backoff.delay(self.failures));
        let opens = self.enabled && !self.open && !idle_left && self.failures >= self.threshold;
        self.open |= opens;
        opens
    }

    /// Records a successful attempt; `true` when it closed the breaker.
    pub(crate) fn on_success(&mut self) -> bool {
        let was_open = self.open;
        *self = Self::new(self.enabled, self.threshold, self.backoff);
        was_open
    }

    /// Time until the next attempt: the retry hint while open. While an
    /// attempt is already under way, at least the shortest backoff.
    pub(crate) fn retry_after(&self, now: Instant) -> Duration {
        let until_next = self
            .next_attempt
            .map_or(Duration::ZERO, |at| at.saturating_duration_since(now));
        until_next.max(self.backoff.initial)
    }
}
