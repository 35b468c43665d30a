//! Opening connections: retries with backoff for transient errors only,
//! permanent errors reaching callers at once, timeouts that carry the last
//! connection error, the limit on attempts in flight, and the circuit
//! breaker that fails fast while the database is down and closes by itself
//! when it returns.

use std::time::Duration;

use tidewater::{Error, ErrorClass, PoolConfig};
use tidewater_testkit::{ConnectStep, scripted_pool, settle, spawn_get};
use tokio::time::Instant;

/// Polls `condition` as tokio's paused clock moves on, for at most `limit`.
async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_with_growing_backoff() {
    let (pool, script) = scripted_pool(PoolConfig::default());
    for _ in 0..3 {
        script.push_connect(ConnectStep::Fail(ErrorClass::Transient));
    }
    let start = Instant::now();
    let conn = pool.get().await.unwrap();
    assert_eq!((script.attempts(), script.opened()), (4, 1));
    // Full jitter: each delay lies between zero and 50, 100, 200 ms.
    assert!(
        start.elapsed() <= Duration::from_millis(350),
        "{:?}",
        start.elapsed()
    );
    let stats = pool.stats();
    assert_eq!((stats.connect_errors_transient, stats.opened), (3, 1));
    drop(conn);
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_reaches_every_waiting_caller_at_once_without_retrying() {
    let (pool, script) = scripted_pool(PoolConfig {
        max_connecting: 1,
        ..PoolConfig::default()
    });
    script.set_connect_latency(Duration::from_millis(20));
    script.push_connect(ConnectStep::Fail(ErrorClass::Permanent));
    let start = Instant::now();
    let callers: Vec<_> = (0..3)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.get().await.map(drop) })
        })
        .collect();
    for caller in callers {
        let error = caller.await.unwrap().unwrap_err();
        let Error::Connect(cause) = &error else {
            panic!("{error:?}")
        };
        assert_eq!(cause.class(), ErrorClass::Permanent);
        assert!(!error.is_retryable());
        assert_eq!(
            error.to_string(),
            "cannot connect to the database: password authentication failed (permanent)"
        );
    }
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(20),
        "failed with the first attempt"
    );
    assert_eq!(script.attempts(), 1, "not retried while nobody waits");
    assert_eq!(pool.stats().connect_errors_permanent, 1);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_while_the_database_is_down_carries_the_last_connect_error() {
    let config = PoolConfig {
        acquire_timeout: Duration::from_secs(3),
        breaker_enabled: false,
        ..PoolConfig::default()
    };
    let (pool, script) = scripted_pool(config);
    script.set_down(Some(ErrorClass::Transient));
    let error = pool.get().await.unwrap_err();
    let Error::Timeout {
        last_connect_error: Some(cause),
        status,
        ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(cause.to_string(), "connection refused (transient)");
    assert_eq!(status.size, 0);
    assert!(
        error
            .to_string()
            .ends_with("; last connection error: connection refused (transient)"),
        "{error}"
    );
    assert!(std::error::Error::source(&error).is_some());
    assert!(
        script.attempts() > 3,
        "kept retrying while the caller waited"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hung_connection_attempt_is_cut_off_by_connect_timeout_and_retried() {
    let config = PoolConfig {
        connect_timeout: Duration::from_secs(2),
        ..PoolConfig::default()
    };
    let (pool, script) = scripted_pool(config);
    script.push_connect(ConnectStep::Hang);
    let start = Instant::now();
    drop(pool.get().await.unwrap());
    assert!(start.elapsed() >= Duration::from_secs(2));
    assert!(start.elapsed() <= Duration::from_millis(2050));
    let stats = pool.stats();
    assert_eq!(
        (stats.connect_timeouts, stats.connect_errors_transient),
        (1, 1)
    );
    assert_eq!(script.attempts(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_callers_opens_at_most_max_connecting_at_once() {
    let config = PoolConfig {
        max_connecting: 3,
        ..PoolConfig::default()
    };
    let (pool, script) = scripted_pool(config);
    script.set_connect_latency(Duration::from_millis(50));
    let callers: Vec<_> = (0..50)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let _conn = pool.get().await.unwrap();
                tokio::time::sleep(Duration::from_secs(1)).await;
            })
        })
        .collect();
    settle().await;
    assert_eq!(pool.status().opening, 3);
    for caller in callers {
        caller.await.unwrap();
    }
    assert_eq!(script.peak_connecting(), 3);
    assert_eq!(
        script.opened(),
        50,
        "the pool still grew to meet the demand"
    );
}

#[tokio::test(start_paused = true)]
async fn the_breaker_fails_fast_while_the_database_is_down_and_closes_when_it_returns() {
    let config = PoolConfig {
        acquire_timeout: Duration::from_secs(60),
        breaker_failure_threshold: 3,
        ..PoolConfig::default()
    };
    let (pool, script) = scripted_pool(config);
    script.set_down(Some(ErrorClass::Transient));
    let queued = spawn_get(&pool);
    eventually(Duration::from_secs(5), || pool.status().breaker_open).await;
    assert_eq!(script.attempts(), 3);
    assert_eq!(pool.stats().breaker_opened, 1);

    let start = Instant::now();
    let error = pool.get().await.unwrap_err();
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "failed fast instead of queueing"
    );
    let Error::Unavailable {
        cause,
        failures,
        retry_after,
        ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(cause.to_string(), "connection refused (transient)");
    assert_eq!(*failures, 3);
    assert!(*retry_after >= Duration::from_millis(50) && *retry_after <= Duration::from_secs(2));
    assert_eq!(error.retry_after(), Some(*retry_after));
    assert!(error.is_retryable());
    assert!(
        error
            .to_string()
            .starts_with("database unavailable: 3 connection attempts in a row failed")
    );
    assert_eq!(pool.stats().rejected_unavailable, 1);

    script.reset_peak_connecting();
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(script.peak_connecting(), 1, "a single probe while open");
    assert!(
        !queued.is_finished(),
        "callers queued before the breaker opened keep waiting"
    );

    script.set_down(None);
    eventually(Duration::from_secs(3), || !pool.status().breaker_open).await;
    assert_eq!(
        queued.await.unwrap().unwrap(),
        1,
        "the queued caller got the probe's connection"
    );
    drop(pool.get().await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn the_breaker_can_be_turned_off() {
    let config = PoolConfig {
        acquire_timeout: Duration::from_secs(5),
        breaker_enabled: false,
        breaker_failure_threshold: 1,
        ..PoolConfig::default()
    };
    let (pool, script) = scripted_pool(config);
    script.set_down(Some(ErrorClass::Transient));
    assert!(matches!(pool.get().await, Err(Error::Timeout { .. })));
    assert!(!pool.status().breaker_open);
    assert!(
        matches!(pool.get().await, Err(Error::Timeout { .. })),
        "queued, not refused"
    );
}

#[tokio::test(start_paused = true)]
async fn idle_connections_are_still_served_while_the_breaker_is_open() {
    let config = PoolConfig {
        max_size: 2,
        breaker_failure_threshold: 1,
        ..PoolConfig::default()
    };
    let (pool, script) = scripted_pool(config);
    let held = pool.get().await.unwrap();
    script.set_down(Some(ErrorClass::Transient));
    let waiter = spawn_get(&pool);
    eventually(Duration::from_secs(1), || pool.status().breaker_open).await;
    drop(held); // the queued caller takes it, then gives it back
    waiter.await.unwrap().unwrap();
    assert_eq!(pool.status().idle, 1);
    let conn = pool
        .get()
        .await
        .expect("an idle connection is served even with the breaker open");
    assert!(pool.status().breaker_open);
    drop(conn);
}
