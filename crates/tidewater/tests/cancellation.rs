//! Nothing leaks: a checkout cancelled at each of its `.await` points, a
//! task aborted or panicking while it holds a connection, and a connection
//! handed to a waiter that is cancelled before it runs all leave the pool
//! with every slot usable.

use std::sync::Arc;
use std::time::Duration;

use tidewater::{CloseReason, Pool, PoolConfig};
use tidewater_testkit::{CheckStep, Script, ScriptedManager, scripted_pool, settle};

fn pool_of_one() -> (Pool<ScriptedManager>, Arc<Script>) {
    scripted_pool(PoolConfig {
        max_size: 1,
        ..PoolConfig::default()
    })
}

/// Starts a `get()` in a task and lets it run up to its first wait.
async fn pending_get(pool: &Pool<ScriptedManager>) -> tokio::task::JoinHandle<()> {
    let pool = pool.clone();
    let task = tokio::spawn(async move {
        let _conn = pool.get().await;
        unreachable!("the test aborts this task before it gets a connection");
    });
    settle().await;
    assert!(!task.is_finished());
    task
}

/// The pool's one slot is usable: a fresh `get()` succeeds at once.
async fn assert_slot_free(pool: &Pool<ScriptedManager>) {
    let conn = tokio::time::timeout(Duration::from_millis(1), pool.get()).await;
    assert!(
        matches!(conn, Ok(Ok(_))),
        "the slot was lost: {:?}",
        pool.status()
    );
    let status = pool.status();
    assert_eq!((status.waiters, status.in_use), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn cancelled_while_waiting_in_the_queue() {
    let (pool, _) = pool_of_one();
    let held = pool.get().await.unwrap();
    let waiter = pending_get(&pool).await;
    assert_eq!(pool.status().waiters, 1);
    waiter.abort();
    settle().await;
    assert_eq!(pool.status().waiters, 0);
    drop(held);
    assert_eq!(
        pool.status().idle,
        1,
        "returned to the idle list, not to the cancelled waiter"
    );
    assert_slot_free(&pool).await;
}

#[tokio::test(start_paused = true)]
async fn cancelled_after_being_handed_a_connection_but_before_running() {
    let (pool, _) = pool_of_one();
    let held = pool.get().await.unwrap();
    let waiter = pending_get(&pool).await;
    drop(held); // hands the connection to the waiter, which has not run since
    waiter.abort();
    settle().await;
    assert_eq!(
        pool.status().idle,
        1,
        "the waiter's drop passed the connection on"
    );
    assert_slot_free(&pool).await;
}

#[tokio::test(start_paused = true)]
async fn cancelled_while_a_connection_is_being_opened_for_it() {
    let (pool, script) = pool_of_one();
    script.set_connect_latency(Duration::from_secs(3));
    let waiter = pending_get(&pool).await;
    assert_eq!(pool.status().opening, 1);
    waiter.abort();
    tokio::time::sleep(Duration::from_secs(3)).await;
    settle().await;
    let status = pool.status();
    assert_eq!(
        (status.size, status.idle, status.opening),
        (1, 1, 0),
        "the new connection waits idle"
    );
    assert_slot_free(&pool).await;
    assert_eq!(script.opened(), 1);
}

#[tokio::test(start_paused = true)]
async fn cancelled_while_validating() {
    let (pool, script) = pool_of_one();
    drop(pool.get().await.unwrap());
    tokio::time::advance(Duration::from_secs(1)).await; // past validate_after
    script.push_validate(CheckStep::Hang);
    let waiter = pending_get(&pool).await;
    assert_eq!(script.validations(), 1);
    waiter.abort();
    settle().await;
    assert_eq!(
        pool.status().size,
        0,
        "an interrupted validation discards the connection"
    );
    assert_eq!(pool.stats().closed_by(CloseReason::Interrupted), 1);
    assert_eq!(script.alive(), 0);
    assert_slot_free(&pool).await;
}

#[tokio::test(start_paused = true)]
async fn cancelled_while_resetting() {
    let (pool, script) = pool_of_one();
    let conn = pool.get().await.unwrap();
    conn.set_dirty();
    drop(conn);
    script.push_reset(CheckStep::Hang);
    let waiter = pending_get(&pool).await;
    assert_eq!(script.resets(), 1);
    waiter.abort();
    settle().await;
    assert_eq!(
        pool.status().size,
        0,
        "an interrupted reset discards the connection"
    );
    assert_eq!(pool.stats().closed_by(CloseReason::Interrupted), 1);
    assert_slot_free(&pool).await;
}

#[tokio::test(start_paused = true)]
async fn a_task_aborted_while_holding_gives_the_connection_back() {
    let (pool, _) = pool_of_one();
    let holder = tokio::spawn({
        let pool = pool.clone();
        async move {
            let _conn = pool.get().await.unwrap();
            std::future::pending::<()>().await;
        }
    });
    settle().await;
    assert_eq!(pool.status().in_use, 1);
    holder.abort();
    settle().await;
    assert_eq!(pool.status().idle, 1);
    assert_slot_free(&pool).await;
}

#[tokio::test(start_paused = true)]
async fn a_panic_while_holding_frees_the_slot() {
    let (pool, script) = pool_of_one();
    let holder = tokio::spawn({
        let pool = pool.clone();
        async move {
            let _conn = pool.get().await.unwrap();
            panic!("handler bug");
        }
    });
    assert!(holder.await.unwrap_err().is_panic());
    let status = pool.status();
    assert_eq!(
        (status.size, status.in_use),
        (0, 0),
        "closed: its work stopped at an unknown point"
    );
    assert_eq!(pool.stats().closed_by(CloseReason::Panicked), 1);
    assert_eq!(script.alive(), 0);
    assert_slot_free(&pool).await;
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_waiter_leaves_nothing_behind() {
    let (pool, _) = pool_of_one();
    let held = pool.get().await.unwrap();
    let waiting = pool.get();
    assert!(
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .is_err()
    );
    assert_eq!(pool.status().waiters, 0);
    drop(held);
    assert_slot_free(&pool).await;
}

/// A runtime shutting down drops each task, and each task spawned from
/// then on, at once. A broken connection dropped then, with callers still
/// queued, must not make the pool respawn connection attempts forever.
#[test]
fn a_runtime_shutting_down_with_callers_queued_ends() {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (pool, script) = scripted_pool(PoolConfig {
                max_size: 2,
                ..PoolConfig::default()
            });
            for _ in 0..2 {
                let pool = pool.clone();
                tokio::spawn(async move {
                    let conn = pool.get().await.unwrap();
                    conn.set_broken();
                    std::future::pending::<()>().await;
                    drop(conn);
                });
            }
            settle().await;
            assert_eq!(pool.status().in_use, 2);
            for _ in 0..8 {
                let pool = pool.clone();
                tokio::spawn(async move { pool.get().await.map(drop) });
            }
            settle().await;
            assert_eq!(pool.status().waiters, 8);
            assert_eq!(script.opened(), 2);
        });
        drop(runtime);
        done.send(()).unwrap();
    });
    finished
        .recv_timeout(Duration::from_secs(60))
        .expect("the runtime shut down");
}
