//! Opening connections: the background tasks that connect, retry with
//! backoff, and feed new connections to waiting callers.
//!
//! An opener holds one [`AttemptSlot`] (so the open connections and the
//! attempts together stay within `max_size`, and the slot is given back
//! however the task ends). It runs while [`Pool::wanted_openers`] wants
//! it: callers are waiting, `min_idle` is short, or the breaker needs a
//! probe. It holds only a weak reference to the pool between steps, so a
//! dropped pool stops it.
//!
//! A connection that arrives broken, or fails its first validation, is a
//! failed attempt like a connect error: it backs off, counts towards the
//! breaker, and the callers' errors name it. Otherwise a server that
//! accepts sessions and drops them at once would make the pool open
//! connections in a tight loop.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};

use tokio::sync::Notify;

use crate::breaker::{Holding, Pacing};
use crate::error::{Breakage, ConnectError, Error};
use crate::hooks::{self, Hook};
use crate::manager::{ErrorClass, Manager};
use crate::pool::{Pool, Shared};
use crate::rt::{self, Instant};
use crate::slots::AttemptSlot;
use crate::state::{Settled, State};
use crate::stats::CloseReason;

enum Step {
    /// Attempt number `n` starts now.
    Connect(u64),
    /// Not before this (or until callers start waiting).
    WaitUntil(Instant),
    Stop,
}

pub(crate) async fn run_opener<M: Manager>(
    pool: Weak<Shared<M>>,
    manager: Arc<M>,
    after_connect: Option<Hook<M>>,
    pacing: Arc<Notify>,
    slot: AttemptSlot,
) {
    let mut slot = Some(slot);
    loop {
        // Registered before the decision, so that callers starting to wait
        // right after it still wake a backing-off opener.
        let callers_came = pacing.notified();
        let mut callers_came = std::pin::pin!(callers_came);
        callers_came.as_mut().enable();
        let Some(shared) = pool.upgrade() else { return };
        let connect_timeout = shared.config.connect_timeout;
        let now = Instant::now();
        let step = Pool::from_shared(shared)
            .with_state(|pool, state| pool.next_step(state, &mut slot, now));
        let attempt = match step {
            Step::Stop => return,
            Step::WaitUntil(at) => {
                rt::sleep_until_or(at, callers_came).await;
                continue;
            }
            Step::Connect(attempt) => attempt,
        };
        let started = Instant::now();
        let outcome = rt::timeout_at(
            started + connect_timeout,
            hooks::open(&*manager, after_connect.as_ref()),
        )
        .await;
        let Some(shared) = pool.upgrade() else { return };
        let pool = Pool::from_shared(shared);
        let now = Instant::now();
        match outcome {
            Some(Ok(mut raw)) => {
                if manager.is_broken(&mut raw) {
                    drop(raw);
                    pool.arrival_failed(Some(attempt), Breakage::OnArrival, now);
                } else {
                    let slot = slot.take().expect("an attempt holds its slot");
                    pool.connected(raw, slot, started, now);
                }
            }
            Some(Err(error)) => {
                let class = manager.classify(&error);
                let pacing = match class {
                    ErrorClass::Permanent => Pacing::Backoff,
                    ErrorClass::Transient | ErrorClass::Full => Pacing::Soon,
                };
                pool.connect_failed(ConnectError::new(error, class), pacing, attempt, now);
            }
            None => {
                pool.shared.stats.connect_timeouts.fetch_add(1, Relaxed);
                let error = ConnectError::timed_out(connect_timeout);
                pool.connect_failed(error, Pacing::Soon, attempt, now);
            }
        }
    }
}

impl<M: Manager> Pool<M> {
    /// Under the lock: whether this opener goes on (with a slot reserved
    /// for its next attempt), and when its next attempt may start.
    fn next_step(
        &self,
        state: &mut State<M::Connection>,
        slot: &mut Option<AttemptSlot>,
        now: Instant,
    ) -> Step {
        let wanted = self.wanted_openers(state);
        match slot {
            Some(_) if self.shared.slots.counts().opening > wanted => {
                *slot = None;
                return Step::Stop;
            }
            Some(_) => {}
            None => match self.shared.slots.reserve_attempt(wanted) {
                Some(reserved) => *slot = Some(reserved),
                None => return Step::Stop,
            },
        }
        match state.breaker.next_attempt(state.waiters.len() > 0) {
            Some(at) if rt::not_yet(at, now) => Step::WaitUntil(at),
            _ => Step::Connect(state.breaker.start_attempt(now)),
        }
    }

    /// A new connection: to the oldest waiter, or idle. The database
    /// answered, so an open breaker closes; but the failures in a row are
    /// forgotten only once the connection proves usable ([`Pool::proven`]):
    /// a server that accepts sessions and drops them must still back off.
    fn connected(&self, raw: M::Connection, slot: AttemptSlot, started: Instant, now: Instant) {
        let shared = &*self.shared;
        shared.stats.opened.fetch_add(1, Relaxed);
        shared
            .stats
            .create_time
            .record(now.saturating_duration_since(started));
        let tick = shared.clock.tick(now);
        let opened = self.with_state(|pool, state| {
            // Under the lock: once the pool is closed, no connection joins.
            if state.closed {
                return Err((raw, CloseReason::PoolClosed));
            }
            let Some(open) = slot.into_open() else {
                return Err((raw, CloseReason::Resized)); // shrank meanwhile
            };
            let conn = pool.new_conn(state, raw, open, tick);
            Ok((conn, state.breaker.on_unproven(now)))
        });
        let (conn, breaker_closed) = match opened {
            Ok(opened) => opened,
            Err((raw, reason)) => {
                shared.stats.count_closed(reason, 1);
                drop(raw);
                return;
            }
        };
        tracing::debug!(pool = %shared.name, connection = conn.id, "connection opened");
        if breaker_closed {
            tracing::info!(pool = %shared.name, "database reachable again: circuit breaker closed");
        }
        self.deliver(conn, None, tick);
    }

    /// A new connection proved usable (it passed its first validation, or
    /// came back healthy from its first use): the database is back for
    /// sure, and the failures in a row are forgotten.
    pub(crate) fn proven(&self) {
        let closed = self.with_state(|_, state| {
            state.broken_arrivals = 0;
            state.breaker.on_success()
        });
        if closed {
            tracing::info!(pool = %self.shared.name, "database reachable again: circuit breaker closed");
        }
    }

    /// A new connection was unusable before it served anyone (`attempt`
    /// is its attempt, when the opener found it so): a failed attempt,
    /// paced by the full backoff.
    ///
    /// Only a connection the opener found broken counts as a connection
    /// error in the statistics: one found later was counted as opened, and
    /// its close is counted with its reason.
    pub(crate) fn arrival_failed(&self, attempt: Option<u64>, how: Breakage, now: Instant) {
        let (error, last_attempt) = self.with_state(|_, state| {
            state.broken_arrivals = state.broken_arrivals.saturating_add(1);
            let error = ConnectError::arrived_broken(state.broken_arrivals, how);
            (error, state.breaker.attempts())
        });
        if attempt.is_some() {
            self.shared
                .stats
                .connect_errors_transient
                .fetch_add(1, Relaxed);
        }
        self.attempt_failed(error, Pacing::Backoff, attempt.unwrap_or(last_attempt), now);
    }

    /// A connection attempt that failed: counted by its class, then
    /// [`Pool::attempt_failed`].
    pub(crate) fn connect_failed(
        &self,
        error: ConnectError,
        pacing: Pacing,
        attempt: u64,
        now: Instant,
    ) {
        let stats = &self.shared.stats;
        match error.class() {
            ErrorClass::Transient | ErrorClass::Full => &stats.connect_errors_transient,
            ErrorClass::Permanent => &stats.connect_errors_permanent,
        }
        .fetch_add(1, Relaxed);
        self.attempt_failed(error, pacing, attempt, now);
    }

    /// A failed attempt (already counted), paced and passed on to the
    /// callers it concerns: a permanent error to every waiter; while the
    /// breaker is open, `Unavailable` to those who joined before the attempt
    /// started.
    fn attempt_failed(&self, error: ConnectError, pacing: Pacing, attempt: u64, now: Instant) {
        let shared = &*self.shared;
        let stats = &shared.stats;
        let (settled, opened, failures, retry_after) = self.with_state(|pool, state| {
            let holding = Holding {
                idle: shared.idle.len() > 0,
                open: shared.slots.counts().open > 0,
            };
            let opened = state
                .breaker
                .on_failure(error.clone(), pacing, now, holding);
            let settled = if error.class() == ErrorClass::Permanent {
                pool.fail_waiters(state, u64::MAX, || Error::Connect(error.clone()))
            } else if state.breaker.is_open() {
                let unavailable = pool.unavailable(state, now);
                pool.fail_waiters(state, attempt, || unavailable.clone())
            } else {
                Settled::new()
            };
            let retry_after = state.breaker.retry_after(now, state.waiters.len() > 0);
            (settled, opened, state.breaker.failures(), retry_after)
        });
        if opened {
            stats.breaker_opened.fetch_add(1, Relaxed);
            tracing::error!(
                pool = %shared.name, failures, %error, ?retry_after,
                "database unreachable: circuit breaker open, failing fast until a probe connects"
            );
        } else if failures == 1 {
            tracing::warn!(pool = %shared.name, %error, ?retry_after, "connection attempt failed; retrying with backoff");
        } else {
            tracing::debug!(pool = %shared.name, failures, %error, ?retry_after, "connection attempt failed");
        }
        settled.finish(self);
    }
}
