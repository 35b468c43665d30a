//! The pool's one background task. It times out the callers whose
//! `acquire_timeout` has passed, sleeping until the front of the queue's
//! deadline (the queue is in deadline order, so one timer serves every
//! waiter). And every `maintenance_interval` it closes idle connections
//! past `idle_timeout` (down to `min_idle`) or past their lifetime, pings
//! idle ones for keepalive, reports leak suspects, evaluates the alerts and
//! starts connection attempts for `min_idle` and the breaker's probe. It
//! ends when the pool is closed or dropped.

use std::panic::Location;
use std::sync::atomic::Ordering::Relaxed;

use crate::alerts::{self, Observation};
use crate::guard::{Conn, PooledConnection};
use crate::manager::Manager;
use crate::pool::Pool;
use crate::rt::{self, Instant};
use crate::stats::CloseReason;

pub(crate) fn start<M: Manager>(pool: &Pool<M>) {
    let weak = pool.downgrade();
    let interval = pool.shared.config.maintenance_interval;
    let sweep = pool.shared.sweep.clone();
    rt::spawn(async move {
        let mut next_round = Instant::now() + interval;
        loop {
            // Registered before the queue is looked at, so that a caller
            // joining right after still wakes this task.
            let woken = sweep.notified();
            let mut woken = std::pin::pin!(woken);
            woken.as_mut().enable();
            let Some(shared) = weak.upgrade() else { return };
            let pool = Pool::from_shared(shared);
            let now = Instant::now();
            if now >= next_round {
                if !run(&pool) {
                    return;
                }
                next_round = now + pool.shared.config.maintenance_interval;
            }
            let wake_at = expire_waiters(&pool, next_round);
            drop(pool);
            rt::sleep_until_or(wake_at, woken).await;
        }
    });
}

/// Times out the callers whose deadline has passed; returns when to look
/// again: at the next deadline in the queue, or at `next_round`.
fn expire_waiters<M: Manager>(pool: &Pool<M>, next_round: Instant) -> Instant {
    let clock = &pool.shared.clock;
    let (now, next_round) = (clock.now(), clock.tick(next_round));
    let (settled, wake_at) = pool.with_state(|pool, state| {
        let (settled, next_deadline) = pool.expire(state, now);
        let wake_at = next_deadline.map_or(next_round, |deadline| deadline.min(next_round));
        state.sweep_at = Some(wake_at);
        (settled, wake_at)
    });
    settled.finish(pool);
    clock.instant(wake_at)
}

/// One round of maintenance; `false` once the pool is closed.
pub(crate) fn run<M: Manager>(pool: &Pool<M>) -> bool {
    let now = Instant::now();
    let tick = pool.shared.clock.tick(now);
    let config = &pool.shared.config;
    let work = pool.with_state(|pool, state| {
        if state.closed {
            return None;
        }
        let shared = &*pool.shared;
        let idle = &shared.idle;
        let mut may_idle_out = idle.len().saturating_sub(config.min_idle);
        let retired: Vec<_> = idle
            .take_where(|conn, _| {
                if conn.expired(tick) {
                    return Some(CloseReason::MaxLifetime);
                }
                let idle_for = tick.since(conn.last_used);
                let idled_out = config.idle_timeout.is_some_and(|limit| idle_for > limit);
                if idled_out && may_idle_out > 0 {
                    may_idle_out -= 1;
                    return Some(CloseReason::IdleTimeout);
                }
                None
            })
            .into_iter()
            .map(|(conn, reason)| conn.retire(reason))
            .collect();
        let due = |conn: &Conn<M::Connection>| {
            config
                .keepalive_interval
                .is_some_and(|interval| tick.since(conn.last_checked) >= interval)
        };
        let pings: Vec<_> = idle
            .take_where(|conn, _| due(conn).then_some(()))
            .into_iter()
            .map(|(conn, ())| {
                (
                    idle.check_out(conn, Location::caller(), tick),
                    shared.slots.start_ping(),
                )
            })
            .collect();
        let leaks = match config.leak_detection_threshold {
            Some(threshold) => {
                let mut leaks = idle.report_new_leaks(tick, threshold);
                leaks.extend(state.handed.report_new(tick, threshold));
                leaks
            }
            None => Vec::new(),
        };
        pool.start_openers(state);
        Some((retired, pings, leaks))
    });
    let Some((retired, pings, leaks)) = work else {
        return false;
    };
    for conn in retired {
        pool.discard(conn);
    }
    for leak in leaks {
        pool.shared.stats.leaks_detected.fetch_add(1, Relaxed);
        tracing::warn!(
            pool = %pool.shared.name,
            connection = leak.connection_id,
            caller = %leak.caller,
            held_for = ?leak.held_for,
            "connection held longer than leak_detection_threshold: possible leak"
        );
    }
    for (checkout, ping) in pings {
        rt::spawn(PooledConnection::new(pool.clone(), checkout).keepalive(ping));
    }
    evaluate_alerts(pool, now);
    #[cfg(feature = "metrics")]
    crate::metrics_facade::publish(pool);
    true
}

/// Keeps a sample of the statistics for the window, evaluates the alert
/// rules, and tells the sinks what fired or resolved.
fn evaluate_alerts<M: Manager>(pool: &Pool<M>, now: Instant) {
    let stats = pool.stats();
    let status = pool.status();
    let leaks = pool.leak_suspects();
    let last_connect_error = pool.lock().breaker.last_error().map(ToString::to_string);
    let (events, sinks) = {
        let mut monitor = pool.monitor();
        let recent = monitor.window.recent(&stats);
        monitor.window.record(now, &stats);
        let seen = Observation {
            now,
            status: &status,
            recent: &recent,
            leaks: &leaks,
            last_connect_error,
            capacity: monitor.capacity,
        };
        let events = monitor.alerts.evaluate(&seen);
        (events, monitor.sinks.clone())
    };
    for event in &events {
        alerts::trace(event);
        for sink in &sinks {
            sink.notify(event);
        }
    }
}
