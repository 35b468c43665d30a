//! What the pool needs from its runtime: spawning, timers and a lock.
//!
//! Normally tokio and `std::sync::Mutex`. Built with
//! `RUSTFLAGS="--cfg tidewater_shuttle"`, the same pool code runs on
//! shuttle's scheduler instead, which explores the interleavings of its
//! tasks for the model check (`tests/model_check.rs`); timers then never
//! fire, since no test there depends on one.

pub(crate) use tokio::time::Instant;

use std::future::Future;

#[cfg(not(tidewater_shuttle))]
pub(crate) use std::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicU32, AtomicU64, fence},
};

#[cfg(tidewater_shuttle)]
pub(crate) use shuttle::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicU32, AtomicU64, fence},
};

/// Runs `task` in the background.
pub(crate) fn spawn(task: impl Future<Output = ()> + Send + 'static) {
    #[cfg(not(tidewater_shuttle))]
    tokio::spawn(task);
    #[cfg(tidewater_shuttle)]
    shuttle::future::spawn(task);
}

/// Runs `future` until `deadline`; `None` when time ran out first.
pub(crate) async fn timeout_at<F: Future>(deadline: Instant, future: F) -> Option<F::Output> {
    #[cfg(not(tidewater_shuttle))]
    return tokio::time::timeout_at(deadline, future).await.ok();
    #[cfg(tidewater_shuttle)]
    {
        let _ = deadline;
        Some(future.await)
    }
}

/// Waits until `deadline`.
pub(crate) async fn sleep_until(deadline: Instant) {
    #[cfg(not(tidewater_shuttle))]
    tokio::time::sleep_until(deadline).await;
    #[cfg(tidewater_shuttle)]
    {
        let _ = deadline;
        shuttle::future::yield_now().await;
    }
}

/// Whether an attempt due at `due` must still wait at `now`. Under the model
/// check, never: its timers do not fire and it explores orderings, not
/// time, so pacing would only make the openers spin on the real clock.
pub(crate) fn not_yet(due: Instant, now: Instant) -> bool {
    cfg!(not(tidewater_shuttle)) && due > now
}

/// Waits until `deadline`, or until `wake` completes, whichever is first.
pub(crate) async fn sleep_until_or(deadline: Instant, wake: impl Future) {
    let sleep = std::pin::pin!(sleep_until(deadline));
    let wake = std::pin::pin!(wake);
    let (mut sleep, mut wake) = (sleep, wake);
    std::future::poll_fn(|cx| {
        if sleep.as_mut().poll(cx).is_ready() || wake.as_mut().poll(cx).is_ready() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}

/// How many idle shards a pool has: one per core the process may use
/// (rounded up to a power of two). Four under the model check, so that its
/// tasks land on different shards.
pub(crate) fn shard_count() -> usize {
    #[cfg(not(tidewater_shuttle))]
    return std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(64);
    #[cfg(tidewater_shuttle)]
    4
}

/// A number for the running thread (a task, under the model check), the
/// same each time it asks: it picks the thread's home shard.
pub(crate) fn worker_number() -> usize {
    #[cfg(not(tidewater_shuttle))]
    {
        use std::cell::Cell;
        use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static NUMBER: Cell<usize> = const { Cell::new(usize::MAX) };
        }
        NUMBER.with(|number| {
            if number.get() == usize::MAX {
                number.set(NEXT.fetch_add(1, Relaxed));
            }
            number.get()
        })
    }
    #[cfg(tidewater_shuttle)]
    usize::from(shuttle::current::me())
}
