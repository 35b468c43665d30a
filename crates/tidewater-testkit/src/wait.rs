//! Bounded waiting: polling with a deadline, and running blocking process
//! work on a thread of its own so async tests keep running meanwhile.

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::time::{Duration, Instant};

/// How long any one wait for a process or a server may take.
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

/// Calls `check` until it returns `Some`, pausing a little longer each time
/// (up to 50 ms), and fails with a `TimedOut` error naming `what` once
/// `deadline` has passed.
pub(crate) fn poll<T>(
    what: &str,
    deadline: Duration,
    mut check: impl FnMut() -> io::Result<Option<T>>,
) -> io::Result<T> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(value) = check()? {
            return Ok(value);
        }
        if start.elapsed() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{what}: still not done after {deadline:?}"),
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Runs blocking `work` on a new thread and waits for it without blocking
/// the async runtime. Works under any runtime (or none but an executor), so
/// one server can be shared by tests that each run their own runtime. A
/// panic in `work` resumes in the caller.
pub(crate) async fn off_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("tidewater-testkit".into())
        .spawn(move || {
            // The receiver may be gone (the caller's future was dropped).
            let _ = tx.send(catch_unwind(AssertUnwindSafe(work)));
        })
        .expect("the system can start a thread");
    match rx
        .await
        .expect("the worker thread always sends its outcome")
    {
        Ok(value) => value,
        Err(panic) => resume_unwind(panic),
    }
}

/// How long a test waits for something that takes milliseconds: far
/// beyond any scheduling delay on a loaded machine, so that only an event
/// that never comes ends the wait.
pub const POLL_DEADLINE: Duration = Duration::from_secs(30);

/// Polls `condition` every 10 ms (on tokio's clock) until it holds;
/// `false` if it still does not after [`POLL_DEADLINE`]. Tests wait for
/// events this way, never for a fixed time.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let mut polls = 0;
/// assert!(tidewater_testkit::eventually(async || { polls += 1; polls == 3 }).await);
/// # }
/// ```
pub async fn eventually(mut condition: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + POLL_DEADLINE;
    while !condition().await {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}
