//! The background rules: jittered max lifetime (never closing a connection
//! in use), idle timeout down to min_idle, min_idle refill, keepalive pings,
//! leak reports with the caller's file and line, draining on close, and the
//! maintenance task ending with its pool.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidewater::{CloseReason, Error, Pool, PoolConfig};
use tidewater_testkit::{CheckStep, ScriptedManager, scripted_pool, settle, spawn_get};

/// Opens `n` connections and leaves them idle.
async fn fill(pool: &Pool<ScriptedManager>, n: usize) {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(pool.get().await.unwrap());
    }
}

/// Moves tokio's paused clock on by `by`, letting every timer fire in turn.
async fn pass(by: Duration) {
    tokio::time::sleep(by).await;
    settle().await;
}

#[tokio::test(start_paused = true)]
async fn lifetimes_are_jittered_so_connections_do_not_expire_together() {
    let config = PoolConfig {
        max_lifetime: Some(Duration::from_secs(100)),
        max_lifetime_jitter: 0.1,
        idle_timeout: None,
        ..PoolConfig::default()
    };
    let (pool, script) = scripted_pool(config);
    fill(&pool, 40).await;
    pass(Duration::from_secs(89)).await;
    assert_eq!(
        script.closed(),
        0,
        "no lifetime is shortened by more than 10%"
    );
    pass(Duration::from_secs(6)).await; // t = 95 s: the middle of the jitter window
    let early = script.closed();
    assert!(
        early > 0 && early < 40,
        "{early} of 40 closed by t = 95 s: lifetimes are spread"
    );
    pass(Duration::from_secs(6)).await;
    assert_eq!(script.closed(), 40);
    assert_eq!(pool.stats().closed_by(CloseReason::MaxLifetime), 40);
}

#[tokio::test(start_paused = true)]
async fn a_connection_in_use_past_its_lifetime_is_closed_only_when_returned() {
    let config = PoolConfig {
        max_lifetime: Some(Duration::from_secs(10)),
        ..PoolConfig::default()
    };
    let (pool, script) = scripted_pool(config);
    let conn = pool.get().await.unwrap();
    pass(Duration::from_secs(30)).await;
    assert_eq!(script.closed(), 0, "never closed while in use");
    drop(conn);
    assert_eq!(script.closed(), 1);
    assert_eq!(pool.stats().closed_by(CloseReason::MaxLifetime), 1);
}

#[tokio::test(start_paused = true)]
async fn an_expired_idle_connection_is_not_handed_out() {
    let config = PoolConfig {
        max_lifetime: Some(Duration::from_secs(10)),
        maintenance_interval: Duration::from_secs(60),
        ..PoolConfig::default()
    };
    let (pool, _) = scripted_pool(config);
    fill(&pool, 1).await;
    tokio::time::advance(Duration::from_secs(11)).await; // before maintenance runs
    assert_eq!(pool.get().await.unwrap().id(), 2);
}

#[tokio::test(start_paused = true)]
async fn idle_connections_time_out_down_to_min_idle() {
    let config = PoolConfig {
        idle_timeout: Some(Duration::from_secs(60)),
        min_idle: 2,
        ..PoolConfig::default()
    };
    let (pool, script) = scripted_pool(config);
    fill(&pool, 5).await;
    settle().await;
    let idle = pool.status().idle;
    assert!(
        idle >= 5,
        "min_idle kept opening spares while all five were in use"
    );
    pass(Duration::from_secs(59)).await;
    assert_eq!(pool.status().idle, idle);
    pass(Duration::from_secs(2)).await;
    assert_eq!(pool.status().idle, 2);
    assert_eq!(script.closed(), u64::from(idle) - 2);
    assert_eq!(
        pool.stats().closed_by(CloseReason::IdleTimeout),
        u64::from(idle) - 2
    );
}

#[tokio::test(start_paused = true)]
async fn min_idle_connections_are_opened_and_refilled() {
    let config = PoolConfig {
        min_idle: 3,
        ..PoolConfig::default()
    };
    let (pool, script) = scripted_pool(config);
    settle().await;
    assert_eq!(pool.status().idle, 3, "opened at start, before any caller");
    let conn = pool.get().await.unwrap();
    conn.set_broken();
    drop(conn);
    assert_eq!(pool.status().idle, 2);
    // Broken in its first use, the connection counts as a failed attempt:
    // its replacement waits the first backoff step (at most 10 ms).
    tokio::time::sleep(Duration::from_millis(10)).await;
    settle().await;
    assert_eq!(
        pool.status().idle,
        3,
        "refilled after the broken one was discarded"
    );
    assert_eq!(script.opened(), 4);
}

#[tokio::test(start_paused = true)]
async fn keepalive_pings_idle_connections_and_replaces_dead_ones() {
    let config = PoolConfig {
        keepalive_interval: Some(Duration::from_secs(30)),
        min_idle: 1,
        ..PoolConfig::default()
    };
    let (pool, script) = scripted_pool(config);
    settle().await;
    pass(Duration::from_secs(31)).await;
    assert_eq!(script.validations(), 1);
    assert_eq!(pool.status().idle, 1);
    script.push_validate(CheckStep::Fail);
    pass(Duration::from_secs(30)).await;
    assert_eq!(script.validations(), 2);
    assert_eq!(pool.stats().closed_by(CloseReason::ValidationFailed), 1);
    assert_eq!(
        (pool.status().idle, script.opened()),
        (1, 2),
        "min_idle replaced the dead one"
    );
}

/// Log output captured for one test.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[tokio::test(start_paused = true)]
async fn a_leak_is_reported_once_with_the_callers_file_and_line_and_again_on_return() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let config = PoolConfig {
        leak_detection_threshold: Some(Duration::from_secs(5)),
        ..PoolConfig::default()
    };
    let (pool, _) = scripted_pool(config);
    let line = line!() + 1;
    let leaked = pool.get().await.unwrap();
    pass(Duration::from_secs(4)).await;
    assert!(pool.leak_suspects().is_empty());
    pass(Duration::from_secs(10)).await;

    let suspects = pool.leak_suspects();
    assert_eq!(suspects.len(), 1);
    assert_eq!(suspects[0].caller.file(), file!());
    assert_eq!(suspects[0].caller.line(), line);
    assert_eq!(suspects[0].connection_id, leaked.id());
    assert!(suspects[0].held_for >= Duration::from_secs(14));
    assert_eq!(
        pool.stats().leaks_detected,
        1,
        "reported once, not on every scan"
    );

    let logged = logs.text();
    let at = format!("{}:{line}", file!());
    assert_eq!(logged.matches("possible leak").count(), 1, "{logged}");
    assert!(logged.contains(&at), "the report names {at}: {logged}");

    drop(leaked);
    assert!(logs.text().contains("leak suspect returned to the pool"));
    assert!(pool.leak_suspects().is_empty());
}

#[tokio::test(start_paused = true)]
async fn close_drains_connections_in_use_within_drain_timeout() {
    let config = PoolConfig {
        max_size: 3,
        drain_timeout: Duration::from_secs(10),
        ..PoolConfig::default()
    };
    let (pool, script) = scripted_pool(config);
    let returns_soon = pool.get().await.unwrap();
    let held_long = pool.get().await.unwrap();
    drop(pool.get().await.unwrap()); // one idle
    let queued = spawn_get(&pool);
    drop(queued); // detached: the pool is full, so it waits

    let closing = tokio::spawn({
        let pool = pool.clone();
        async move { pool.close().await }
    });
    settle().await;
    assert_eq!(script.closed(), 1, "the idle connection closed at once");
    assert!(matches!(pool.get().await, Err(Error::Closed { .. })));

    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(returns_soon);
    assert_eq!(script.closed(), 2, "returned after close: closed");
    let report = closing.await.unwrap();
    assert_eq!(
        (report.closed_idle, report.drained, report.still_in_use),
        (1, 1, 1)
    );

    drop(held_long);
    assert_eq!(script.alive(), 0);
    assert_eq!(pool.stats().closed_by(CloseReason::PoolClosed), 3);
}

#[tokio::test(start_paused = true)]
async fn callers_waiting_when_the_pool_closes_get_closed_at_once() {
    let (pool, _) = scripted_pool(PoolConfig {
        max_size: 1,
        ..PoolConfig::default()
    });
    let held = pool.get().await.unwrap();
    let queued = spawn_get(&pool);
    settle().await;
    let close = tokio::spawn({
        let pool = pool.clone();
        async move { pool.close().await }
    });
    let error = queued.await.unwrap().unwrap_err();
    assert_eq!(error.to_string(), "pool \"default\" is closed");
    drop(held);
    assert_eq!(close.await.unwrap().still_in_use, 0);
}

#[tokio::test(start_paused = true)]
async fn the_maintenance_task_ends_with_its_pool() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let (pool, _) = scripted_pool(PoolConfig::default());
    assert_eq!(metrics.num_alive_tasks(), 1);
    drop(pool);
    pass(Duration::from_secs(2)).await;
    assert_eq!(metrics.num_alive_tasks(), 0);

    let (pool, _) = scripted_pool(PoolConfig::default());
    pool.close().await;
    pass(Duration::from_secs(2)).await;
    assert_eq!(metrics.num_alive_tasks(), 0, "closing ends it too");
}
