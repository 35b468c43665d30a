//! Opening connections: retries with backoff for transient errors only,
//! permanent errors reaching callers at once, timeouts that carry the last
//! connection error, the limit on attempts in flight, and the circuit
//! breaker that fails fast while the database is down and closes by itself
//! when it returns.

use std::time::Duration;

use tidewater::{BreakerConfig, Error, ErrorClass, PoolConfig};
use tidewater_testkit::{CheckStep, ConnectStep, scripted_pool, settle, spawn_get};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_soon_while_a_caller_waits() {
    let (pool, script) = scripted_pool(PoolConfig::default());
    for _ in 0..3 {
        script.push_connect(ConnectStep::Fail(ErrorClass::Transient));
    }
    let start = Instant::now();
    let conn = pool.get().await.unwrap();
    assert_eq!((script.attempts(), script.opened()), (4, 1));
    // With a caller waiting, each retry comes within 10 ms of the failure
    // (connect_backoff.initial).
    let waited = start.elapsed();
    assert!(waited <= Duration::from_millis(30), "{waited:?}");
    let stats = pool.stats();
    assert_eq!((stats.connect_errors_transient, stats.opened), (3, 1));
    drop(conn);
}

#[tokio::test(start_paused = true)]
async fn without_callers_the_backoff_grows() {
    let config = PoolConfig {
        min_idle: 1,
        breaker: BreakerConfig {
            enabled: false,
            ..Default::default()
        },
        ..PoolConfig::default()
    };
    let (pool, script) = scripted_pool(config);
    script.set_down(Some(ErrorClass::Transient));
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Between half and all of 10, 20, 40 ... 500 ms: about 30 attempts in
    // 10 s, against about 1 300 if every retry came as soon as with callers.
    let attempts = script.attempts();
    assert!((20..=150).contains(&attempts), "{attempts} attempts");
    assert_eq!(pool.status().size, 0);
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
        breaker: BreakerConfig {
            enabled: false,
            ..Default::default()
        },
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
async fn the_breaker_fails_callers_fast_while_the_database_is_down_and_serves_them_when_it_returns()
{
    let config = PoolConfig {
        acquire_timeout: Duration::from_secs(60),
        breaker: BreakerConfig {
            failure_threshold: 3,
            ..Default::default()
        },
        ..PoolConfig::default()
    };
    let (pool, script) = scripted_pool(config);
    script.set_down(Some(ErrorClass::Transient));

    // The caller waiting when the breaker opens learns it then, not after
    // its 60 s: once three attempts or more, each within 10 ms of the last,
    // have failed over the largest backoff (500 ms: a shorter outage, a
    // restart, is waited out).
    let start = Instant::now();
    let error = spawn_get(&pool).await.unwrap().unwrap_err();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited <= Duration::from_millis(510),
        "{waited:?}"
    );
    let Error::Unavailable {
        cause, failures, ..
    } = &error
    else {
        panic!("{error:?}")
    };
    let failures = *failures;
    assert_eq!(cause.to_string(), "connection refused (transient)");
    assert!(failures >= 50, "{failures} attempts, 5 to 10 ms apart");
    assert!(pool.status().breaker_open);
    assert_eq!(
        (script.attempts(), pool.stats().breaker_opened),
        (u64::from(failures), 1)
    );

    // A caller arriving now waits for the next probe only, and fails with it.
    let start = Instant::now();
    let error = pool.get().await.unwrap_err();
    assert!(
        start.elapsed() <= Duration::from_millis(10),
        "{:?}",
        start.elapsed()
    );
    let Error::Unavailable {
        failures: now_failed,
        retry_after,
        ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(
        *now_failed,
        failures + 1,
        "failed by an attempt made after it came"
    );
    assert!(
        *retry_after >= Duration::from_millis(10) && *retry_after <= Duration::from_millis(500)
    );
    assert_eq!(error.retry_after(), Some(*retry_after));
    assert!(error.is_retryable());
    let said = format!(
        "database unavailable: {} connection attempts in a row failed",
        failures + 1
    );
    assert!(error.to_string().starts_with(&said), "{error}");
    assert_eq!(pool.stats().rejected_unavailable, 2);

    // Nobody waiting: a single probe, backing off up to 500 ms.
    script.reset_peak_connecting();
    let before = script.attempts();
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(script.peak_connecting(), 1, "a single probe while open");
    let probes = script.attempts() - before;
    assert!((40..=400).contains(&probes), "{probes} probes in 20 s");

    // The database returns: the next caller pulls the probe in and gets
    // its connection.
    script.set_down(None);
    let start = Instant::now();
    let conn = pool.get().await.unwrap();
    assert!(
        start.elapsed() <= Duration::from_millis(10),
        "{:?}",
        start.elapsed()
    );
    assert!(!pool.status().breaker_open);
    drop(conn);
}

#[tokio::test(start_paused = true)]
async fn after_a_permanent_error_the_open_breaker_fails_callers_at_once() {
    let config = PoolConfig {
        breaker: BreakerConfig {
            failure_threshold: 1,
            ..Default::default()
        },
        ..PoolConfig::default()
    };
    let (pool, script) = scripted_pool(config);
    script.set_down(Some(ErrorClass::Permanent));
    assert!(matches!(pool.get().await, Err(Error::Connect(_))));
    assert!(pool.status().breaker_open);
    let start = Instant::now();
    let error = pool.get().await.unwrap_err();
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    assert_eq!(start.elapsed(), Duration::ZERO, "no probe can help soon");
}

#[tokio::test(start_paused = true)]
async fn while_a_probe_hangs_callers_fail_at_once() {
    let config = PoolConfig {
        breaker: BreakerConfig {
            failure_threshold: 1,
            ..Default::default()
        },
        connect_timeout: Duration::from_secs(5),
        ..PoolConfig::default()
    };
    let (pool, script) = scripted_pool(config);
    script.set_down(Some(ErrorClass::Transient));
    assert!(matches!(pool.get().await, Err(Error::Unavailable { .. })));
    script.set_down(None);
    script.push_connect(ConnectStep::Hang);
    let first = tokio::spawn({
        let pool = pool.clone();
        async move {
            let start = Instant::now();
            (pool.get().await.map(drop), start.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    let start = Instant::now();
    let error = pool.get().await.unwrap_err();
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "the probe has hung for 600 ms"
    );
    let (outcome, waited) = first.await.unwrap();
    assert!(
        matches!(outcome, Err(Error::Unavailable { .. })),
        "{outcome:?}"
    );
    assert!(
        waited >= Duration::from_secs(5),
        "waited for the hung probe: {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_connection_coming_back_healthy_closes_the_breaker() {
    let config = PoolConfig {
        max_size: 2,
        breaker: BreakerConfig {
            failure_threshold: 1,
            ..Default::default()
        },
        ..PoolConfig::default()
    };
    let (pool, script) = scripted_pool(config);
    let held = pool.get().await.unwrap();
    script.set_down(Some(ErrorClass::Transient));
    let error = spawn_get(&pool).await.unwrap().unwrap_err();
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    assert!(pool.status().breaker_open);
    drop(held); // the database answered on it: it is back
    assert!(!pool.status().breaker_open);
    let conn = pool.get().await.expect("the connection that came back");
    assert_eq!(conn.id(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_full_server_opens_no_breaker_while_the_pools_connections_work() {
    let config = PoolConfig {
        max_size: 2,
        breaker: BreakerConfig {
            failure_threshold: 1,
            ..Default::default()
        },
        ..PoolConfig::default()
    };
    let (pool, script) = scripted_pool(config);
    let held = pool.get().await.unwrap();
    script.set_down(Some(ErrorClass::Full));
    let waiter = spawn_get(&pool);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(script.attempts() > 10, "kept trying for the waiting caller");
    assert!(!pool.status().breaker_open);
    assert!(!waiter.is_finished(), "waits for the connection in use");
    drop(held);
    assert_eq!(waiter.await.unwrap().unwrap(), 1);
    let stats = pool.stats();
    assert_eq!(stats.connect_errors_transient, stats.connect_errors());
}

#[tokio::test(start_paused = true)]
async fn the_breaker_can_be_turned_off() {
    let config = PoolConfig {
        acquire_timeout: Duration::from_secs(5),
        breaker: BreakerConfig {
            enabled: false,
            failure_threshold: 1,
        },
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
async fn an_idle_connection_keeps_the_breaker_closed() {
    let config = PoolConfig {
        max_size: 2,
        min_idle: 2,
        breaker: BreakerConfig {
            failure_threshold: 1,
            ..Default::default()
        },
        ..PoolConfig::default()
    };
    let (pool, script) = scripted_pool(config);
    settle().await;
    assert_eq!(pool.status().idle, 2);
    let broken = pool.get().await.unwrap();
    let broken_id = broken.id();
    broken.set_broken();
    script.set_down(Some(ErrorClass::Transient));
    drop(broken); // min_idle wants it replaced; every attempt fails
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(script.attempts() >= 5, "{} attempts", script.attempts());
    assert!(!pool.status().breaker_open, "callers can still be served");
    let conn = pool.get().await.expect("the idle connection");
    assert_ne!(conn.id(), broken_id);
}

/// Runs gets for `run` (a caller every 10 ms), and returns their errors.
async fn keep_calling(
    pool: &tidewater::Pool<tidewater_testkit::ScriptedManager>,
    run: Duration,
) -> Vec<Error> {
    let end = Instant::now() + run;
    let mut errors = Vec::new();
    while Instant::now() < end {
        if let Err(error) = pool.get().await {
            errors.push(error);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    errors
}

#[tokio::test(start_paused = true)]
async fn connections_that_arrive_broken_back_off_open_the_breaker_and_say_so() {
    let config = PoolConfig {
        acquire_timeout: Duration::from_secs(2),
        ..PoolConfig::default()
    };
    let bound = config.most_connect_attempts_within(Duration::from_secs(2));
    let (pool, script) = scripted_pool(config);
    script.set_arrive_broken(true);
    let errors = keep_calling(&pool, Duration::from_secs(2)).await;
    let attempts = script.attempts();
    assert!(
        attempts <= bound,
        "{attempts} connection attempts in 2 s, more than the backoff allows ({bound})"
    );
    assert!(pool.status().breaker_open);
    assert_eq!(pool.stats().breaker_opened, 1);
    let last = errors.last().expect("the callers failed");
    let Error::Unavailable { cause, .. } = last else {
        panic!("{last:?}")
    };
    let said = cause.to_string();
    assert!(
        said.starts_with("every new connection arrived broken, ")
            && said.ends_with(" in a row (transient)"),
        "{said}"
    );
    assert_eq!(pool.status().size, 0);
    assert_eq!(script.alive(), 0, "each broken arrival was closed");

    // The server stops dropping sessions: the probe's connection closes
    // the breaker.
    script.set_arrive_broken(false);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!pool.status().breaker_open);
    drop(pool.get().await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn without_a_breaker_a_broken_arrival_still_backs_off_and_the_timeout_names_it() {
    let config = PoolConfig {
        acquire_timeout: Duration::from_secs(2),
        breaker: BreakerConfig {
            enabled: false,
            ..Default::default()
        },
        ..PoolConfig::default()
    };
    let bound = config.most_connect_attempts_within(config.acquire_timeout);
    let (pool, script) = scripted_pool(config);
    script.set_arrive_broken(true);
    let error = pool.get().await.unwrap_err();
    let attempts = script.attempts();
    assert!(attempts <= bound, "{attempts} attempts, bound {bound}");
    assert!(
        error
            .to_string()
            .contains("every new connection arrived broken, "),
        "{error}"
    );
}

#[tokio::test(start_paused = true)]
async fn new_connections_failing_their_first_validation_back_off_like_broken_ones() {
    let config = PoolConfig {
        acquire_timeout: Duration::from_secs(2),
        validate_after: Duration::ZERO,
        breaker: BreakerConfig {
            enabled: false,
            ..Default::default()
        },
        ..PoolConfig::default()
    };
    let bound = config.most_connect_attempts_within(config.acquire_timeout);
    let (pool, script) = scripted_pool(config);
    for _ in 0..1000 {
        script.push_validate(CheckStep::Fail);
    }
    let error = pool.get().await.unwrap_err();
    let attempts = script.attempts();
    assert!(attempts <= bound, "{attempts} attempts, bound {bound}");
    assert_eq!(
        script.validations(),
        attempts,
        "each new connection was validated once"
    );
    assert!(
        error
            .to_string()
            .contains("every new connection failed its first validation, ")
            && error.to_string().contains("; last: scripted check failure"),
        "{error}"
    );
    assert_eq!(pool.stats().validation_failures, attempts);
}

#[tokio::test(start_paused = true)]
async fn new_connections_breaking_in_their_first_use_back_off_like_broken_ones() {
    let config = PoolConfig {
        acquire_timeout: Duration::from_secs(2),
        ..PoolConfig::default()
    };
    let bound = config.most_connect_attempts_within(Duration::from_secs(2));
    let (pool, script) = scripted_pool(config);
    // Every caller finds its (new) connection dead at its first query.
    let end = Instant::now() + Duration::from_secs(2);
    let mut errors = Vec::new();
    while Instant::now() < end {
        match pool.get().await {
            Ok(conn) => conn.set_broken(),
            Err(error) => errors.push(error),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let attempts = script.attempts();
    assert!(
        attempts <= bound,
        "{attempts} connection attempts in 2 s, more than the backoff allows ({bound})"
    );
    assert!(pool.stats().breaker_opened >= 1, "{}", pool.status());
    let last = errors.last().expect("the callers failed");
    assert!(
        last.to_string()
            .contains("every new connection broke in its first use, "),
        "{last}"
    );
    let stats = pool.stats();
    assert_eq!(stats.connect_errors(), 0, "each attempt itself connected");
    assert_eq!(
        stats.closed_by(tidewater::CloseReason::Broken) + u64::from(pool.status().size),
        attempts,
        "every connection opened was broken in its first use, or is still idle"
    );

    // A connection that comes back healthy from its first use proves the
    // database is fine again: the failures in a row are forgotten.
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(pool.get().await.expect("the probe's connection, at last"));
    assert!(!pool.status().breaker_open);
    script.set_down(Some(ErrorClass::Transient));
    let _held = pool.get().await.unwrap();
    let before = script.attempts();
    let error = spawn_get(&pool).await.unwrap().unwrap_err();
    let Error::Unavailable { failures, .. } = error else {
        panic!("{error:?}")
    };
    assert_eq!(
        u64::from(failures),
        script.attempts() - before,
        "a fresh run of failures, not the old streak"
    );
}
