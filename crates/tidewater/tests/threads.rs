//! The pool on real threads: connections move between the per-thread idle
//! shards, callers on one thread are served by returns on another, and
//! after a burst of contended checkouts every connection is back and every
//! counter balances. Real time, bounded by `acquire_timeout`; nothing here
//! measures speed.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tidewater::{Pool, PoolConfig};
use tidewater_testkit::ScriptedManager;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contended_checkouts_across_threads_lose_nothing() {
    const TASKS: u64 = 16;
    const ROUNDS: u64 = 500;
    let manager = ScriptedManager::new();
    let script = manager.script();
    let config = PoolConfig {
        max_size: 3,
        acquire_timeout: Duration::from_secs(20),
        ..PoolConfig::default()
    };
    let pool = Pool::new(manager, config).unwrap();

    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for round in 0..ROUNDS {
                    let conn = pool
                        .get()
                        .await
                        .expect("every caller is served within acquire_timeout");
                    if (task + round) % 3 == 0 {
                        // Hold it across a yield, so others queue and are
                        // served by hand-off, possibly on the other thread.
                        tokio::task::yield_now().await;
                    }
                    drop(conn);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }

    let status = pool.status();
    assert_eq!((status.in_use, status.waiters), (0, 0), "{status}");
    assert_eq!(status.idle, status.size);
    assert!(status.size <= 3);
    let stats = pool.stats();
    assert_eq!(stats.acquired(), TASKS * ROUNDS);
    assert_eq!(stats.timeouts, 0);
    assert_eq!(stats.opened - stats.closed_total(), u64::from(status.size));
    assert_eq!(script.alive(), u64::from(status.size));
    assert_eq!(stats.use_time.count(), TASKS * ROUNDS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_on_one_thread_is_served_by_a_return_on_another() {
    let config = PoolConfig {
        max_size: 1,
        acquire_timeout: Duration::from_secs(20),
        ..PoolConfig::default()
    };
    let pool = Pool::new(ScriptedManager::new(), config).unwrap();
    let held = pool.get().await.unwrap();
    let (queued_tx, queued_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn({
        let pool = pool.clone();
        let runtime = tokio::runtime::Handle::current();
        move || {
            runtime.block_on(async {
                let get = pool.get();
                let mut get = std::pin::pin!(get);
                assert!(
                    poll_once(get.as_mut()).await.is_none(),
                    "the pool's one connection is held"
                );
                queued_tx.send(()).unwrap();
                get.await.map(|conn| conn.id())
            })
        }
    });
    queued_rx.recv().unwrap();
    assert_eq!(pool.status().waiters, 1);
    drop(held); // on this thread's shard, while the caller waits on another
    assert_eq!(waiter.join().unwrap().unwrap(), 1);
}

/// Polls `future` once; `Some` if it finished.
async fn poll_once<F: Future>(mut future: Pin<&mut F>) -> Option<F::Output> {
    poll_fn(|cx| {
        Poll::Ready(match future.as_mut().poll(cx) {
            Poll::Ready(output) => Some(output),
            Poll::Pending => None,
        })
    })
    .await
}
