//! Code the pool runs on a connection at set moments, for every backend:
//! after it opens (session settings, `search_path`, prepared statements)
//! and before each checkout (a check of the application's own).
//!
//! A hook is an async closure over `&mut` the connection, returning the
//! backend's error: a failing `after_connect` is a failed connection attempt
//! (classified by the [`Manager`], so a permanent error reaches waiting
//! callers at once and a transient one is retried with backoff); a failing
//! `before_checkout` discards the connection like a failed validation, and
//! the caller gets another. Both run within the pool's timeouts
//! (`connect_timeout`, `validation_timeout`).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use tidewater::{Hooks, Pool, PoolConfig};
//! use tidewater_testkit::ScriptedManager;
//!
//! let hooks = Hooks::new()
//!     .after_connect(|conn| Box::pin(async move {
//!         // e.g. conn.batch_execute("SET search_path = app").await
//!         let _ = conn;
//!         Ok(())
//!     }));
//! let pool = Pool::builder(ScriptedManager::new(), PoolConfig::default())
//!     .hooks(hooks)
//!     .build()
//!     .unwrap();
//! assert!(pool.get().await.is_ok());
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::manager::Manager;

/// The future a hook returns: it borrows the connection while it runs.
pub type HookFuture<'c, E> = Pin<Box<dyn Future<Output = Result<(), E>> + Send + 'c>>;

type HookFn<M> = dyn for<'c> Fn(&'c mut <M as Manager>::Connection) -> HookFuture<'c, <M as Manager>::Error>
    + Send
    + Sync;

/// A hook: shared by every task that runs it.
pub(crate) type Hook<M> = Arc<HookFn<M>>;

/// The hooks of a pool, set with [`PoolBuilder::hooks`](crate::PoolBuilder::hooks).
/// None by default: a pool without hooks does no work for them.
pub struct Hooks<M: Manager> {
    pub(crate) after_connect: Option<Hook<M>>,
    pub(crate) before_checkout: Option<Hook<M>>,
}

impl<M: Manager> Hooks<M> {
    /// No hooks.
    ///
    /// ```
    /// use tidewater::Hooks;
    /// use tidewater_testkit::ScriptedManager;
    /// let hooks: Hooks<ScriptedManager> = Hooks::new();
    /// assert_eq!(format!("{hooks:?}"), "Hooks { after_connect: false, before_checkout: false }");
    /// ```
    pub fn new() -> Self {
        Self {
            after_connect: None,
            before_checkout: None,
        }
    }

    /// Runs `hook` on every new connection, before anyone uses it. An error
    /// is a failed connection attempt, with the class the manager gives it.
    ///
    /// ```
    /// use tidewater::Hooks;
    /// use tidewater_testkit::ScriptedManager;
    /// let hooks = Hooks::<ScriptedManager>::new()
    ///     .after_connect(|conn| Box::pin(async move { let _ = conn.id(); Ok(()) }));
    /// assert_eq!(format!("{hooks:?}"), "Hooks { after_connect: true, before_checkout: false }");
    /// ```
    pub fn after_connect<F>(mut self, hook: F) -> Self
    where
        F: for<'c> Fn(&'c mut M::Connection) -> HookFuture<'c, M::Error> + Send + Sync + 'static,
    {
        self.after_connect = Some(Arc::new(hook));
        self
    }

    /// Runs `hook` on every checkout, after the pool's own validation or
    /// reset. An error discards the connection (counted as a failed
    /// validation) and the caller gets another; a pool with this hook checks
    /// every connection it hands out, so the hook should be cheap.
    ///
    /// ```
    /// use tidewater::Hooks;
    /// use tidewater_testkit::ScriptedManager;
    /// let hooks = Hooks::<ScriptedManager>::new()
    ///     .before_checkout(|conn| Box::pin(async move { let _ = conn; Ok(()) }));
    /// assert_eq!(format!("{hooks:?}"), "Hooks { after_connect: false, before_checkout: true }");
    /// ```
    pub fn before_checkout<F>(mut self, hook: F) -> Self
    where
        F: for<'c> Fn(&'c mut M::Connection) -> HookFuture<'c, M::Error> + Send + Sync + 'static,
    {
        self.before_checkout = Some(Arc::new(hook));
        self
    }
}

impl<M: Manager> Default for Hooks<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: Manager> Clone for Hooks<M> {
    fn clone(&self) -> Self {
        Self {
            after_connect: self.after_connect.clone(),
            before_checkout: self.before_checkout.clone(),
        }
    }
}

impl<M: Manager> std::fmt::Debug for Hooks<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("after_connect", &self.after_connect.is_some())
            .field("before_checkout", &self.before_checkout.is_some())
            .finish()
    }
}

/// Opens a connection through `manager`, then runs the `after_connect` hook
/// on it.
pub(crate) async fn open<M: Manager>(
    manager: &M,
    after_connect: Option<&Hook<M>>,
) -> Result<M::Connection, M::Error> {
    let mut conn = manager.connect().await?;
    if let Some(hook) = after_connect {
        hook(&mut conn).await?;
    }
    Ok(conn)
}
