//! Checkout and return: reuse order, FIFO waiters, bounds, timeouts,
//! validation and reset on checkout, detach and resize. Every test runs the
//! scripted manager under tokio's paused clock.

use std::time::Duration;

use tidewater::{CloseReason, Error, IdleOrder, Pool, PoolConfig};
use tidewater_testkit::{CheckStep, ScriptedManager, scripted_pool, settle, spawn_get};
use tokio::sync::mpsc;

fn sized(max_size: u32) -> PoolConfig {
    PoolConfig {
        max_size,
        ..PoolConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_returned_connection_is_reused() {
    let (pool, script) = scripted_pool(sized(4));
    let first = pool.get().await.unwrap();
    let id = first.id();
    drop(first);
    assert_eq!(pool.get().await.unwrap().id(), id);
    assert_eq!(script.opened(), 1);
    let status = pool.status();
    assert_eq!((status.size, status.idle, status.in_use), (1, 1, 0));
    assert_eq!(pool.stats().acquired(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_early_return_with_question_mark_gives_the_connection_back() {
    let (pool, _) = scripted_pool(sized(1));
    async fn fails(pool: &Pool<ScriptedManager>) -> Result<(), Box<dyn std::error::Error>> {
        let _conn = pool.get().await?;
        Err("query failed")?;
        unreachable!()
    }
    assert!(fails(&pool).await.is_err());
    assert_eq!(pool.status().idle, 1);
}

async fn reuse_order(order: IdleOrder) -> Vec<u64> {
    let (pool, _) = scripted_pool(PoolConfig {
        idle_order: order,
        ..sized(3)
    });
    let held = [
        pool.get().await.unwrap(),
        pool.get().await.unwrap(),
        pool.get().await.unwrap(),
    ];
    drop(held); // returned in order 1, 2, 3
    let mut taken = Vec::new();
    for _ in 0..3 {
        let conn = pool.get().await.unwrap();
        taken.push(conn.id());
        std::mem::forget(conn.detach());
    }
    taken
}

#[tokio::test(start_paused = true)]
async fn idle_connections_are_reused_lifo_by_default_or_fifo() {
    assert_eq!(reuse_order(IdleOrder::Lifo).await, [3, 2, 1]);
    assert_eq!(reuse_order(IdleOrder::Fifo).await, [1, 2, 3]);
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_arrival_order() {
    let (pool, _) = scripted_pool(sized(1));
    let held = pool.get().await.unwrap();
    let (served, mut order) = mpsc::unbounded_channel();
    for caller in 0..5 {
        let (pool, served) = (pool.clone(), served.clone());
        tokio::spawn(async move {
            let _conn = pool.get().await.unwrap();
            served.send(caller).unwrap();
        });
        settle().await; // caller is now queued behind the ones before it
    }
    assert_eq!(pool.status().waiters, 5);
    drop(held);
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(order.recv().await.unwrap());
    }
    assert_eq!(seen, [0, 1, 2, 3, 4]);
}

#[tokio::test(start_paused = true)]
async fn a_returned_connection_goes_to_a_waiter_not_to_a_newcomer() {
    let (pool, _) = scripted_pool(sized(1));
    let held = pool.get().await.unwrap();
    let waiter = spawn_get(&pool);
    settle().await;
    drop(held); // handed to the waiter, which has not run yet
    assert!(matches!(
        pool.try_get().await,
        Err(Error::NoIdleConnection { .. })
    ));
    assert_eq!(waiter.await.unwrap().unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn never_more_than_max_size_connections() {
    let (pool, script) = scripted_pool(sized(3));
    script.set_connect_latency(Duration::from_millis(5));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let _conn = pool.get().await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(script.opened(), 3);
    assert_eq!(pool.stats().acquired(), 20);
}

#[tokio::test(start_paused = true)]
async fn get_gives_up_at_acquire_timeout_and_says_why() {
    let config = PoolConfig {
        acquire_timeout: Duration::from_secs(2),
        ..sized(1)
    };
    let (pool, _) = scripted_pool(config);
    let _held = pool.get().await.unwrap();
    let start = tokio::time::Instant::now();
    let error = pool.get().await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    let Error::Timeout {
        waited,
        status,
        last_connect_error,
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(*waited, Duration::from_secs(2));
    assert_eq!(
        (status.size, status.in_use, status.waiters),
        (1, 1, 0),
        "the caller has left the queue"
    );
    assert!(
        last_connect_error.is_none(),
        "the database is fine: no connect error"
    );
    assert!(error.is_retryable());
    assert_eq!(
        error.to_string(),
        "timed out after 2s waiting for a connection \
         (pool \"default\": 1 of 1 open, 1 in use, 0 idle, 0 opening, 0 waiting)"
    );
    assert_eq!(pool.stats().timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn the_waiter_queue_is_bounded() {
    let (pool, _) = scripted_pool(PoolConfig {
        max_waiters: 2,
        ..sized(1)
    });
    let _held = pool.get().await.unwrap();
    for _ in 0..2 {
        let pool = pool.clone();
        tokio::spawn(async move { pool.get().await.map(drop) });
    }
    settle().await;
    let error = pool.get().await.unwrap_err();
    assert!(matches!(error, Error::QueueFull { .. }), "{error:?}");
    assert!(error.to_string().starts_with("too many callers waiting"));
    assert_eq!(pool.stats().rejected_queue_full, 1);
}

#[tokio::test(start_paused = true)]
async fn callers_a_new_connection_is_opened_for_are_not_counted_against_max_waiters() {
    let (pool, _) = scripted_pool(PoolConfig {
        max_waiters: 0,
        ..sized(2)
    });
    let first = pool
        .get()
        .await
        .expect("waits for a connection opened for it");
    let second = pool.get().await.expect("likewise");
    let error = pool.get().await.unwrap_err();
    assert!(
        matches!(error, Error::QueueFull { .. }),
        "full, and nobody may wait: {error:?}"
    );
    drop((first, second));
}

#[tokio::test(start_paused = true)]
async fn try_get_never_waits_or_opens() {
    let (pool, script) = scripted_pool(sized(1));
    assert!(matches!(
        pool.try_get().await,
        Err(Error::NoIdleConnection { .. })
    ));
    assert_eq!(script.attempts(), 0);
    drop(pool.get().await.unwrap());
    let conn = pool.try_get().await.unwrap();
    assert!(matches!(
        pool.try_get().await,
        Err(Error::NoIdleConnection { .. })
    ));
    drop(conn);
}

#[tokio::test(start_paused = true)]
async fn a_connection_idle_longer_than_validate_after_is_validated() {
    let (pool, script) = scripted_pool(sized(1));
    drop(pool.get().await.unwrap());
    tokio::time::advance(Duration::from_millis(400)).await;
    drop(pool.get().await.unwrap());
    assert_eq!(script.validations(), 0, "idle 400 ms: no validation");
    tokio::time::advance(Duration::from_millis(600)).await;
    drop(pool.get().await.unwrap());
    assert_eq!(script.validations(), 1, "idle 600 ms: validated");
    let stats = pool.stats();
    // The first get waited for the connection to open; the third validated.
    assert_eq!((stats.acquired_direct, stats.acquired_after_wait), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn a_connection_failing_validation_is_replaced() {
    let (pool, script) = scripted_pool(sized(1));
    drop(pool.get().await.unwrap());
    tokio::time::advance(Duration::from_secs(1)).await;
    script.push_validate(CheckStep::Fail);
    let conn = pool.get().await.unwrap();
    assert_eq!(
        conn.id(),
        2,
        "a fresh connection replaced the one that failed"
    );
    assert_eq!(script.closed(), 1);
    let stats = pool.stats();
    assert_eq!(stats.closed_by(CloseReason::ValidationFailed), 1);
    assert_eq!(stats.validation_failures, 1);
}

#[tokio::test(start_paused = true)]
async fn a_hung_validation_is_cut_off_by_validation_timeout() {
    let config = PoolConfig {
        validation_timeout: Duration::from_secs(1),
        ..sized(1)
    };
    let (pool, script) = scripted_pool(config);
    drop(pool.get().await.unwrap());
    tokio::time::advance(Duration::from_secs(1)).await;
    script.push_validate(CheckStep::Hang);
    let start = tokio::time::Instant::now();
    let conn = pool.get().await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(conn.id(), 2);
    assert_eq!(pool.stats().closed_by(CloseReason::ValidationFailed), 1);
}

#[tokio::test(start_paused = true)]
async fn a_dirty_connection_is_reset_before_reuse() {
    let (pool, script) = scripted_pool(sized(1));
    let conn = pool.get().await.unwrap();
    conn.set_dirty();
    drop(conn);
    let conn = pool.get().await.unwrap();
    assert!(!conn.is_dirty());
    assert_eq!(
        (script.resets(), script.validations()),
        (1, 0),
        "a reset proves the connection works"
    );
    drop(conn);
    drop(pool.get().await.unwrap());
    assert_eq!(script.resets(), 1, "clean connections are not reset");
}

#[tokio::test(start_paused = true)]
async fn a_connection_whose_reset_fails_is_replaced() {
    let (pool, script) = scripted_pool(sized(1));
    let conn = pool.get().await.unwrap();
    conn.set_dirty();
    drop(conn);
    script.push_reset(CheckStep::Fail);
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.id(), 2);
    assert_eq!(pool.stats().closed_by(CloseReason::ResetFailed), 1);
}

#[tokio::test(start_paused = true)]
async fn a_broken_connection_is_discarded_on_return_and_its_slot_freed() {
    let (pool, script) = scripted_pool(sized(1));
    let conn = pool.get().await.unwrap();
    conn.set_broken();
    drop(conn);
    assert_eq!(pool.status().size, 0);
    assert_eq!(script.closed(), 1);
    assert_eq!(pool.get().await.unwrap().id(), 2);
    assert_eq!(pool.stats().closed_by(CloseReason::Broken), 1);
}

#[tokio::test(start_paused = true)]
async fn a_broken_connection_returned_while_callers_wait_is_replaced_for_them() {
    let (pool, _) = scripted_pool(sized(1));
    let conn = pool.get().await.unwrap();
    let waiter = spawn_get(&pool);
    settle().await;
    conn.set_broken();
    drop(conn);
    assert_eq!(waiter.await.unwrap().unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn detach_takes_a_connection_out_for_good() {
    let (pool, script) = scripted_pool(sized(1));
    let raw = pool.get().await.unwrap().detach();
    assert_eq!(pool.status().size, 0);
    assert_eq!(script.closed(), 0, "the caller owns it now");
    assert_eq!(
        pool.get().await.unwrap().id(),
        2,
        "the freed slot opened another"
    );
    drop(raw);
    assert_eq!(pool.stats().closed_by(CloseReason::Detached), 1);
}

#[tokio::test(start_paused = true)]
async fn growing_the_pool_serves_waiters() {
    let (pool, _) = scripted_pool(sized(1));
    let _held = pool.get().await.unwrap();
    let waiter = spawn_get(&pool);
    settle().await;
    pool.resize(2).unwrap();
    assert_eq!(waiter.await.unwrap().unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn shrinking_the_pool_closes_idle_now_and_surplus_in_use_on_return() {
    let (pool, script) = scripted_pool(sized(4));
    let mut idle = take(&pool, 4).await;
    let in_use = idle.split_off(2);
    drop(idle);
    assert_eq!(pool.status().idle, 2);
    pool.resize(1).unwrap();
    assert_eq!(
        pool.status().size,
        2,
        "both idle connections closed at once"
    );
    drop(in_use);
    let status = pool.status();
    assert_eq!((status.max_size, status.size, status.idle), (1, 1, 1));
    assert_eq!(script.alive(), 1);
    assert_eq!(pool.stats().closed_by(CloseReason::Resized), 3);
}

/// Takes `n` connections and holds them.
async fn take(
    pool: &Pool<ScriptedManager>,
    n: usize,
) -> Vec<tidewater::PooledConnection<ScriptedManager>> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(pool.get().await.unwrap());
    }
    held
}

#[tokio::test(start_paused = true)]
async fn status_and_counters_balance() {
    let (pool, script) = scripted_pool(sized(5));
    let held = take(&pool, 5).await;
    held[0].set_broken();
    drop(held);
    let status = pool.status();
    let stats = pool.stats();
    assert_eq!((status.size, status.idle, status.in_use), (4, 4, 0));
    assert_eq!(stats.opened - stats.closed_total(), u64::from(status.size));
    assert_eq!(script.alive(), u64::from(status.size));
    assert_eq!(stats.use_time.count(), 5);
    assert_eq!(stats.create_time.count(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_connection_handed_from_caller_to_caller_names_its_holder_in_leak_reports() {
    let (pool, _) = scripted_pool(PoolConfig {
        leak_detection_threshold: Some(Duration::from_secs(5)),
        ..sized(1)
    });
    let first = pool.get().await.unwrap();
    let (took, mut told) = mpsc::channel(1);
    let line = line!() + 4;
    let second = tokio::spawn({
        let pool = pool.clone();
        async move {
            let conn = pool.get().await.unwrap();
            took.send(()).await.unwrap();
            tokio::time::sleep(Duration::from_secs(6)).await;
            drop(conn);
        }
    });
    settle().await;
    drop(first); // straight to the waiting caller
    told.recv().await.unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let suspects = pool.leak_suspects();
    assert_eq!(suspects.len(), 1, "{suspects:?}");
    assert_eq!(suspects[0].caller.line(), line, "the caller holding it now");
    assert!(suspects[0].held_for >= Duration::from_secs(5));
    second.await.unwrap();
    assert!(
        pool.leak_suspects().is_empty(),
        "its record ended with its return"
    );
    assert_eq!(pool.status().idle, 1);
}
