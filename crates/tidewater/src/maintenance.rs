//! The pool's one background task: every `maintenance_interval` it closes
//! idle connections past `idle_timeout` (down to `min_idle`) or past their
//! lifetime, pings idle ones for keepalive, reports leak suspects, and
//! starts connection attempts for `min_idle` and the breaker's probe. It
//! ends when the pool is closed or dropped.

use std::panic::Location;
use std::sync::atomic::Ordering::Relaxed;

use tokio::time::MissedTickBehavior;

use crate::alerts::{self, Observation};
use crate::guard::{Conn, PooledConnection};
use crate::manager::Manager;
use crate::pool::Pool;
use crate::rt::{self, Instant};
use crate::stats::CloseReason;

pub(crate) fn start<M: Manager>(pool: &Pool<M>) {
    let weak = pool.downgrade();
    let mut ticker = tokio::time::interval(pool.shared.config.maintenance_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    rt::spawn(async move {
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let Some(shared) = weak.upgrade() else { return };
            if !run(&Pool::from_shared(shared)) {
                return;
            }
        }
    });
}

/// One round of maintenance; `false` once the pool is closed.
pub(crate) fn run<M: Manager>(pool: &Pool<M>) -> bool {
    let now = Instant::now();
    let config = &pool.shared.config;
    let work = pool.with_state(|pool, state| {
        if state.closed {
            return None;
        }
        let idle = &pool.shared.idle;
        let mut may_idle_out = idle.len().saturating_sub(config.min_idle);
        let retired = idle.take_where(|conn, _| {
            if conn.expired(now) {
                return Some(CloseReason::MaxLifetime);
            }
            let idle_for = now.saturating_duration_since(conn.last_used);
            let idled_out = config.idle_timeout.is_some_and(|limit| idle_for > limit);
            if idled_out && may_idle_out > 0 {
                may_idle_out -= 1;
                return Some(CloseReason::IdleTimeout);
            }
            None
        });
        state.size -= retired.len() as u32;
        let due = |conn: &Conn<M::Connection>| {
            config.keepalive_interval.is_some_and(|interval| {
                now.saturating_duration_since(conn.last_checked) >= interval
            })
        };
        let pings: Vec<_> = idle
            .take_where(|conn, _| due(conn).then_some(()))
            .into_iter()
            .map(|(conn, ())| idle.check_out(conn, Location::caller(), now))
            .collect();
        state.pinging += pings.len() as u32;
        let leaks = match config.leak_detection_threshold {
            Some(threshold) => idle.report_new_leaks(now, threshold),
            None => Vec::new(),
        };
        pool.start_openers(state);
        Some((retired, pings, leaks))
    });
    let Some((retired, pings, leaks)) = work else {
        return false;
    };
    for (conn, reason) in retired {
        pool.discard(conn, reason);
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
    for checkout in pings {
        rt::spawn(PooledConnection::new(pool.clone(), checkout).keepalive());
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
