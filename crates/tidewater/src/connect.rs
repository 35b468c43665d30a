//! Opening connections: the background tasks that connect, retry with
//! backoff, and feed new connections to waiting callers.
//!
//! An opener holds one reservation in the pool's `opening` count (which,
//! with the open connections, stays within `max_size`). It runs while
//! [`Pool::wanted_openers`] wants it:
//! callers are waiting, `min_idle` is short, or the breaker needs a probe.
//! It holds only a weak reference to the pool between steps, so a dropped
//! pool stops it.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};

use crate::error::{ConnectError, Error};
use crate::manager::Manager;
use crate::pool::{Pool, Shared, State};
use crate::rt::{self, Instant};
use crate::stats::CloseReason;

enum Step {
    Connect,
    WaitUntil(Instant),
    Stop,
}

pub(crate) async fn run_opener<M: Manager>(pool: Weak<Shared<M>>, manager: Arc<M>) {
    loop {
        let Some(shared) = pool.upgrade() else { return };
        let connect_timeout = shared.config.connect_timeout;
        match Pool::from_shared(shared).with_state(|pool, state| next_step(pool, state)) {
            Step::Stop => return,
            Step::WaitUntil(at) => {
                rt::sleep_until(at).await;
                continue;
            }
            Step::Connect => {}
        }
        let started = Instant::now();
        let outcome = rt::timeout_at(started + connect_timeout, manager.connect()).await;
        let Some(shared) = pool.upgrade() else { return };
        let outcome = match outcome {
            Some(Ok(raw)) => Ok(raw),
            Some(Err(error)) => {
                let class = manager.classify(&error);
                Err(ConnectError::new(error, class))
            }
            None => {
                shared.stats.connect_timeouts.fetch_add(1, Relaxed);
                Err(ConnectError::timed_out(connect_timeout))
            }
        };
        let pool = Pool::from_shared(shared);
        let now = Instant::now();
        match outcome {
            Ok(raw) => {
                if !pool.connected(raw, started, now) {
                    return;
                }
            }
            Err(error) => pool.connect_failed(error, now),
        }
    }
}

/// Keep going (now, or once the backoff allows), or give the reservation back.
fn next_step<M: Manager>(pool: &Pool<M>, state: &mut State<M::Connection>) -> Step {
    if state.opening > pool.wanted_openers(state) {
        state.opening -= 1;
        return Step::Stop;
    }
    match state.breaker.next_attempt() {
        Some(at) if at > Instant::now() => Step::WaitUntil(at),
        _ => Step::Connect,
    }
}

impl<M: Manager> Pool<M> {
    /// Adds a new connection (to the oldest waiter, or idle); `true` when
    /// the opener should keep its reservation and go on.
    fn connected(&self, raw: M::Connection, started: Instant, now: Instant) -> bool {
        let shared = &*self.shared;
        shared.stats.opened.fetch_add(1, Relaxed);
        shared
            .stats
            .create_time
            .record(now.saturating_duration_since(started));
        let (waker, surplus, recovered, go_on) = self.with_state(|pool, state| {
            let conn = pool.new_conn(state, raw, now);
            state.opening -= 1;
            let (waker, surplus, recovered) = if state.closed {
                (None, Some((conn, CloseReason::PoolClosed)), false)
            } else if state.size >= state.max_size {
                (None, Some((conn, CloseReason::Resized)), false)
            } else {
                state.size += 1;
                tracing::debug!(pool = %shared.name, connection = conn.id, "connection opened");
                (
                    pool.hand_over(state, conn, now),
                    None,
                    state.breaker.on_success(),
                )
            };
            let go_on = state.opening < pool.wanted_openers(state);
            if go_on {
                state.opening += 1;
            }
            (waker, surplus, recovered, go_on)
        });
        if recovered {
            shared.gauges.set_breaker_open(false);
            tracing::info!(pool = %shared.name, "database reachable again: circuit breaker closed");
        }
        if let Some(waker) = waker {
            waker.wake();
        }
        if let Some((conn, reason)) = surplus {
            self.discard(conn, reason);
        }
        go_on
    }

    fn connect_failed(&self, error: ConnectError, now: Instant) {
        let shared = &*self.shared;
        let stats = &shared.stats;
        match error.class() {
            crate::ErrorClass::Transient => stats.connect_errors_transient.fetch_add(1, Relaxed),
            crate::ErrorClass::Permanent => stats.connect_errors_permanent.fetch_add(1, Relaxed),
        };
        let (wakers, opened, failures, retry_after) = self.with_state(|_, state| {
            let opened = state
                .breaker
                .on_failure(error.clone(), now, shared.idle.len() > 0);
            let wakers = if error.class().is_transient() {
                Vec::new()
            } else {
                state
                    .waiters
                    .serve_all(|| Err(Error::Connect(error.clone())))
            };
            (
                wakers,
                opened,
                state.breaker.failures(),
                state.breaker.retry_after(now),
            )
        });
        if opened {
            shared.gauges.set_breaker_open(true);
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
        wakers.into_iter().for_each(std::task::Waker::wake);
    }
}
