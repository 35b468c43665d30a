//! What a caller embedding a load run may add to it: [`Hooks`], a tap on
//! every request and a [`StopHandle`] that ends the users early.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::record::Tap;

/// What a caller embedding a load run may add to it (`tidewater-lab drill`,
/// `tidewater-lab soak`): nothing by default.
#[derive(Clone, Default)]
pub struct Hooks {
    /// Sees every request of the users as it ends.
    pub tap: Option<Tap>,
    /// Ends the users early: once stopped, no request starts and each user
    /// ends after its request in flight (within one think time).
    pub stop: Option<StopHandle>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("tap", &self.tap.is_some())
            .field("stop", &self.stop)
            .finish()
    }
}

/// Ends a run's users early (see [`Hooks::stop`]). Clones share it.
///
/// ```
/// let stop = tidewater_lab::load::StopHandle::new();
/// assert!(!stop.is_stopped());
/// stop.clone().stop();
/// assert!(stop.is_stopped());
/// ```
#[derive(Clone, Debug)]
pub struct StopHandle(pub(super) Arc<AtomicU64>);

impl StopHandle {
    /// A handle not stopped yet.
    pub fn new() -> Self {
        Self(Arc::new(AtomicU64::new(u64::MAX)))
    }

    /// Stops the users: no request starts after this.
    pub fn stop(&self) {
        self.0.store(0, Ordering::Relaxed);
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }
}

impl Default for StopHandle {
    fn default() -> Self {
        Self::new()
    }
}
