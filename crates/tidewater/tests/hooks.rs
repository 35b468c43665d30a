//! The pool's hooks: `after_connect` runs once on each new connection and
//! its failure is a failed connection attempt with the manager's class;
//! `before_checkout` runs on every checkout and its failure discards the
//! connection, the caller getting another.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use tidewater::{Error, ErrorClass, Hooks, Pool, PoolConfig};
use tidewater_testkit::{ScriptedError, ScriptedManager};

/// A hook that counts its runs and fails on the manager's connection
/// `fail_id` (0: on every connection) with an error of `class`.
fn counting(
    runs: &Arc<AtomicU64>,
    fail_id: u64,
    class: ErrorClass,
) -> impl for<'c> Fn(
    &'c mut tidewater_testkit::ScriptedConnection,
) -> tidewater::hooks::HookFuture<'c, ScriptedError>
+ Send
+ Sync
+ 'static {
    let runs = runs.clone();
    move |conn| {
        runs.fetch_add(1, SeqCst);
        let fails = fail_id == 0 || conn.id() == fail_id;
        Box::pin(async move {
            if fails {
                Err(ScriptedError {
                    message: format!("hook refused connection {}", conn.id()),
                    class,
                })
            } else {
                Ok(())
            }
        })
    }
}

fn pool(hooks: Hooks<ScriptedManager>) -> Pool<ScriptedManager> {
    Pool::builder(ScriptedManager::new(), PoolConfig::default())
        .hooks(hooks)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn after_connect_runs_once_per_connection() {
    let runs = Arc::new(AtomicU64::new(0));
    let pool = pool(Hooks::new().after_connect(counting(&runs, u64::MAX, ErrorClass::Permanent)));
    for _ in 0..3 {
        drop(pool.get().await.unwrap());
    }
    let (a, b) = (pool.get().await.unwrap(), pool.get().await.unwrap());
    assert_ne!(a.id(), b.id());
    assert_eq!(runs.load(SeqCst), 2, "once for each of the two connections");
}

#[tokio::test(start_paused = true)]
async fn a_permanent_after_connect_failure_reaches_the_caller_at_once() {
    let runs = Arc::new(AtomicU64::new(0));
    let pool = pool(Hooks::new().after_connect(counting(&runs, 0, ErrorClass::Permanent)));
    let error = pool.get().await.unwrap_err();
    let Error::Connect(cause) = &error else {
        panic!("not a connect error: {error:?}")
    };
    assert_eq!(cause.class(), ErrorClass::Permanent);
    assert!(error.to_string().contains("hook refused"), "{error}");
    assert_eq!(pool.status().size, 0, "the connection was dropped");
    assert_eq!(pool.stats().connect_errors_permanent, 1);
}

#[tokio::test(start_paused = true)]
async fn a_transient_after_connect_failure_is_retried() {
    let runs = Arc::new(AtomicU64::new(0));
    // The first connection's setup fails; the retry's succeeds.
    let pool = pool(Hooks::new().after_connect(counting(&runs, 1, ErrorClass::Transient)));
    let conn = pool.get().await.unwrap();
    assert_eq!((*conn).id(), 2, "the second connection the manager opened");
    assert_eq!(
        (conn.id(), runs.load(SeqCst)),
        (1, 2),
        "the first never joined"
    );
    assert_eq!(pool.stats().connect_errors_transient, 1);
}

#[tokio::test(start_paused = true)]
async fn before_checkout_runs_on_every_checkout() {
    let runs = Arc::new(AtomicU64::new(0));
    let pool = pool(Hooks::new().before_checkout(counting(&runs, u64::MAX, ErrorClass::Transient)));
    for _ in 0..5 {
        drop(pool.get().await.unwrap());
    }
    assert_eq!(runs.load(SeqCst), 5);
    assert_eq!(pool.stats().opened, 1, "the same connection each time");
}

#[tokio::test(start_paused = true)]
async fn a_failing_before_checkout_discards_the_connection_and_serves_another() {
    let runs = Arc::new(AtomicU64::new(0));
    let pool = pool(Hooks::new().before_checkout(counting(&runs, 1, ErrorClass::Transient)));
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.id(), 2, "connection 1 failed the hook");
    drop(conn);
    let stats = pool.stats();
    assert_eq!((stats.opened, stats.validation_failures), (2, 1));
    assert_eq!(pool.status().size, 1, "connection 1 is gone");
}
