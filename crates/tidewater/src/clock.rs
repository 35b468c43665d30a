//! The pool's clock: moments as nanoseconds since the pool was built.
//!
//! Subtracting two `Instant`s normalizes seconds and nanoseconds and checks
//! for overflow (some fifty instructions), and a checkout and its return
//! need several such steps: the wait, the use time, whether the connection
//! idled long enough to be validated, its lifetime. So the pool reads
//! tokio's clock (which tests can pause) once per checkout and once per
//! return, turns the reading into a [`Tick`], and does the rest in integer
//! arithmetic. Tokio's timers still take an `Instant`: [`Clock::instant`].

use std::time::Duration;

use crate::rt::Instant;

/// A moment: nanoseconds since the pool's clock started (enough for five
/// centuries).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Tick(u64);

impl Tick {
    /// Later than any moment a pool lives to see: "never".
    pub(crate) const NEVER: Tick = Tick(u64::MAX);

    /// Nanoseconds from `earlier` to this moment (zero if `earlier` is
    /// later).
    #[inline]
    pub(crate) fn nanos_since(self, earlier: Tick) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// The time from `earlier` to this moment (zero if `earlier` is later).
    #[inline]
    pub(crate) fn since(self, earlier: Tick) -> Duration {
        Duration::from_nanos(self.nanos_since(earlier))
    }

    /// `duration` after this moment.
    #[inline]
    pub(crate) fn after(self, duration: Duration) -> Tick {
        Tick(self.0.saturating_add(nanos(duration)))
    }
}

/// `duration` in nanoseconds, saturating (in 64-bit arithmetic: the
/// 128-bit `as_nanos` costs more than the clock read it follows).
#[inline]
pub(crate) fn nanos(duration: Duration) -> u64 {
    duration
        .as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(duration.subsec_nanos()))
}

/// A pool's clock.
pub(crate) struct Clock {
    epoch: Instant,
}

impl Clock {
    /// A clock that starts now.
    pub(crate) fn new() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }

    /// The moment now.
    #[inline]
    pub(crate) fn now(&self) -> Tick {
        self.tick(Instant::now())
    }

    /// The moment `instant` is (the clock's start, if it is earlier).
    #[inline]
    pub(crate) fn tick(&self, instant: Instant) -> Tick {
        Tick(nanos(instant.saturating_duration_since(self.epoch)))
    }

    /// The `Instant` of `tick`, for tokio's timers (far in the future for
    /// [`Tick::NEVER`]).
    pub(crate) fn instant(&self, tick: Tick) -> Instant {
        let far = Duration::from_secs(100 * 365 * 24 * 3600);
        let after = Duration::from_nanos(tick.0).min(far);
        self.epoch + after
    }
}

#[cfg(all(test, not(tidewater_shuttle)))]
mod tests {
    use super::*;

    #[test]
    fn ticks_subtract_saturating_and_round_trip_through_instants() {
        let clock = Clock::new();
        let start = clock.now();
        let later = start.after(Duration::from_millis(1500));
        assert_eq!(later.since(start), Duration::from_millis(1500));
        assert_eq!(start.since(later), Duration::ZERO);
        assert_eq!(later.nanos_since(start), 1_500_000_000);
        assert_eq!(clock.tick(clock.instant(later)), later);
        assert_eq!(later.after(Duration::MAX), Tick::NEVER);
        assert!(clock.instant(Tick::NEVER) > clock.instant(later));
    }

    #[test]
    fn durations_convert_to_nanoseconds_saturating() {
        assert_eq!(nanos(Duration::new(3, 7)), 3_000_000_007);
        assert_eq!(nanos(Duration::from_nanos(u64::MAX)), u64::MAX);
        assert_eq!(nanos(Duration::MAX), u64::MAX);
    }
}
