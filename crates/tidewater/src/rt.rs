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
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(tidewater_shuttle)]
pub(crate) use shuttle::sync::{Mutex, MutexGuard};

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
