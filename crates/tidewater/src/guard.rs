//! The guard a checkout returns, and what happens to a connection between
//! leaving the idle list and reaching the caller (validation, reset).

use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering::Relaxed;

use crate::clock::{Tick, nanos};
use crate::error::Breakage;
use crate::idle::RecordKey;
use crate::manager::Manager;
use crate::pool::Pool;
use crate::rt::{self, Instant};
use crate::slots::{OpenSlot, PingSlot};
use crate::stats::CloseReason;

const HOLDS: &str = "a guard holds its connection until dropped or detached";

/// A connection and the pool's knowledge of it.
pub(crate) struct Conn<C> {
    pub(crate) raw: C,
    pub(crate) id: u64,
    /// Its place in the pool's count of open connections, given back when
    /// the connection is retired.
    slot: OpenSlot,
    /// When its (jittered) lifetime ends; [`Tick::NEVER`] without one.
    pub(crate) expires_at: Tick,
    /// When a caller last gave it back (drives `idle_timeout`).
    pub(crate) last_used: Tick,
    /// When it was last known to work: returned, validated or pinged
    /// (drives `validate_after` and keepalive).
    pub(crate) last_checked: Tick,
    /// Its session state must be reset before the next checkout.
    pub(crate) needs_reset: bool,
    /// Just opened and handed straight to a caller: not used, not idle yet.
    /// A fault found now (broken, or failing its first validation) is a
    /// failed connection attempt, not a connection that wore out.
    pub(crate) fresh: bool,
    /// Not yet back from a caller: broken on its first return, it never
    /// served anyone, which also counts as a failed connection attempt.
    pub(crate) unused: bool,
}

impl<C> Conn<C> {
    pub(crate) fn new(raw: C, id: u64, slot: OpenSlot, now: Tick, expires_at: Tick) -> Self {
        Self {
            raw,
            id,
            slot,
            expires_at,
            last_used: now,
            last_checked: now,
            needs_reset: false,
            fresh: true,
            unused: true,
        }
    }

    pub(crate) fn expired(&self, now: Tick) -> bool {
        self.expires_at <= now
    }

    /// Takes the connection out of the pool's count (its slot is free at
    /// once), to be closed for `reason` once no lock is held.
    pub(crate) fn retire(self, reason: CloseReason) -> Retired<C> {
        let Self { raw, id, slot, .. } = self;
        drop(slot);
        Retired { raw, id, reason }
    }
}

/// A connection the pool no longer counts, on its way to being closed
/// (dropped) once no lock is held.
pub(crate) struct Retired<C> {
    pub(crate) raw: C,
    pub(crate) id: u64,
    pub(crate) reason: CloseReason,
}

/// A connection out of the pool, with the record of who took it when.
pub(crate) struct Checkout<C> {
    pub(crate) conn: Conn<C>,
    pub(crate) record: RecordKey,
    pub(crate) since: Tick,
}

/// How a connection comes back to the pool.
pub(crate) enum Return {
    /// From a caller: its use time is recorded and its session state
    /// looked at.
    Used,
    /// From a keepalive ping, not a use; until it is back it counts as idle
    /// for `min_idle` (the slot says so).
    Pinged(PingSlot),
}

/// What a checked-out connection needs before the caller gets it.
pub(crate) enum Needs {
    Nothing,
    /// Unusable: the guard's drop discards it; try another.
    Discard,
    /// Work before the caller may have it.
    Check(Checks),
}

/// What [`PooledConnection::check`] does: a session reset (`reset`) or
/// else, when `validate`, a validation; then the `before_checkout` hook if
/// the pool has one.
#[derive(Clone, Copy)]
pub(crate) struct Checks {
    pub(crate) reset: bool,
    pub(crate) validate: bool,
    /// Just opened: a failed validation counts as a failed attempt.
    pub(crate) fresh: bool,
}

/// How preparing a checked-out connection ended.
pub(crate) enum Prepared {
    /// Ready for the caller; `checked` when it was validated or reset.
    Ready { checked: bool },
    /// Unusable: the guard's drop discards it; try another.
    Discard,
    /// The acquire deadline passed while preparing it.
    OutOfTime,
}

/// A connection checked out of a [`Pool`]; derefs to the connection.
///
/// Dropping it gives the connection back, whatever the path: normal drop,
/// `?`, panic (the connection is then closed, since its work stopped at an
/// unknown point), task abort. A connection the [`Manager`] reports broken
/// is closed and its slot freed.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # use tidewater_testkit::ScriptedManager;
/// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
/// let conn = pool.get().await.unwrap();
/// assert_eq!(conn.id(), 1); // derefs to tidewater_testkit::ScriptedConnection
/// drop(conn);
/// assert_eq!(pool.status().idle, 1);
/// # }
/// ```
pub struct PooledConnection<M: Manager> {
    pool: Pool<M>,
    checkout: Option<Checkout<M::Connection>>,
    /// Set while preparing (an interruption discards the connection) or
    /// when preparation failed.
    discard_as: Option<CloseReason>,
    /// Held by a caller, or by the keepalive task.
    holder: Return,
}

impl<M: Manager> PooledConnection<M> {
    pub(crate) fn new(pool: Pool<M>, checkout: Checkout<M::Connection>) -> Self {
        Self {
            pool,
            checkout: Some(checkout),
            discard_as: None,
            holder: Return::Used,
        }
    }

    fn checkout(&self) -> &Checkout<M::Connection> {
        self.checkout.as_ref().expect(HOLDS)
    }

    /// When the pool checked the connection out to this caller.
    pub(crate) fn checked_out_at(&self) -> Tick {
        self.checkout().since
    }

    fn conn_mut(&mut self) -> &mut Conn<M::Connection> {
        &mut self.checkout.as_mut().expect(HOLDS).conn
    }

    /// The connection's id, unique within its pool, as in the pool's logs
    /// and leak reports.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tidewater_testkit::ScriptedManager;
    /// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
    /// let first = pool.get().await.unwrap();
    /// let second = pool.get().await.unwrap();
    /// assert_ne!(first.id(), second.id());
    /// # }
    /// ```
    pub fn id(&self) -> u64 {
        self.checkout().conn.id
    }

    /// Takes the connection out of the pool for good. Its slot is freed, so
    /// the pool may open another in its place.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # use tidewater_testkit::ScriptedManager;
    /// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
    /// let conn = pool.get().await.unwrap().detach();
    /// assert_eq!(pool.status().size, 0);
    /// # drop(conn);
    /// # }
    /// ```
    pub fn detach(mut self) -> M::Connection {
        let checkout = self.checkout.take().expect(HOLDS);
        self.pool.detach(checkout)
    }

    /// What the connection needs before the caller gets it, found without
    /// waiting: nothing (the common case, which costs no future), to be
    /// discarded (expired, or broken), or a validation or reset. A
    /// connection just opened that turns out broken counts as a failed
    /// connection attempt (backoff, breaker), so that a server dropping
    /// every new session cannot make the pool open connections in a tight
    /// loop.
    pub(crate) fn needs(&mut self) -> Needs {
        let Self {
            pool,
            checkout,
            discard_as,
            ..
        } = self;
        let shared = &*pool.shared;
        let config = &shared.config;
        let Checkout { conn, since, .. } = checkout.as_mut().expect(HOLDS);
        let fresh = std::mem::take(&mut conn.fresh);
        if conn.expired(*since) {
            *discard_as = Some(CloseReason::MaxLifetime);
            return Needs::Discard;
        }
        if shared.manager.is_broken(&mut conn.raw) {
            if fresh {
                conn.unused = false; // counted here, not again on its way back
                pool.arrival_failed(None, Breakage::OnArrival, Instant::now());
            }
            *discard_as = Some(CloseReason::Broken);
            return Needs::Discard;
        }
        let reset = conn.needs_reset;
        let validate = config.validate_after.is_zero()
            || since.nanos_since(conn.last_checked) > nanos(config.validate_after);
        if reset || validate || shared.hooks.before_checkout.is_some() {
            Needs::Check(Checks {
                reset,
                validate,
                fresh,
            })
        } else {
            Needs::Nothing
        }
    }

    /// Runs `checks` within the acquire deadline. A `fresh` connection (just
    /// opened) that fails its first validation counts as a failed
    /// connection attempt.
    pub(crate) async fn check(&mut self, deadline: Tick, checks: Checks) -> Prepared {
        let Checks {
            reset,
            validate,
            fresh,
        } = checks;
        // Borrow the fields apart: cloning the pool here would cost two
        // atomic operations on a line every core writes to.
        let Self {
            pool,
            checkout,
            discard_as,
            ..
        } = self;
        let shared = &*pool.shared;
        let config = &shared.config;
        let conn = &mut checkout.as_mut().expect(HOLDS).conn;
        *discard_as = Some(CloseReason::Interrupted);
        let clock = &shared.clock;
        let limit = clock.instant(deadline.min(clock.now().after(config.validation_timeout)));
        let manager = &*shared.manager;
        let hook = shared.hooks.before_checkout.as_deref();
        let outcome = rt::timeout_at(limit, async {
            if reset {
                manager.reset(&mut conn.raw).await?;
            } else if validate {
                manager.validate(&mut conn.raw).await?;
            }
            match hook {
                Some(hook) => hook(&mut conn.raw).await,
                None => Ok(()),
            }
        })
        .await;
        if let Some(Ok(())) = outcome {
            conn.needs_reset = false;
            if reset || validate {
                conn.last_checked = clock.now();
            }
            *discard_as = None;
            if fresh {
                pool.proven();
            }
            return Prepared::Ready { checked: true };
        }
        if outcome.is_none() && clock.now() >= deadline {
            return Prepared::OutOfTime;
        }
        let (reason, failures) = if reset {
            (CloseReason::ResetFailed, &shared.stats.reset_failures)
        } else {
            (
                CloseReason::ValidationFailed,
                &shared.stats.validation_failures,
            )
        };
        failures.fetch_add(1, Relaxed);
        let error = match outcome {
            Some(Err(error)) => error.to_string(),
            _ => format!("timed out after {:?}", config.validation_timeout),
        };
        tracing::debug!(
            pool = %shared.name, connection = conn.id, reason = reason.as_str(), %error,
            "checkout check failed"
        );
        if fresh && !reset {
            pool.arrival_failed(None, Breakage::FirstValidation(error), Instant::now());
        }
        *discard_as = Some(reason);
        Prepared::Discard
    }

    /// Pings an idle connection for keepalive, then gives it back (or
    /// discards it when the ping fails).
    pub(crate) async fn keepalive(mut self, ping: PingSlot) {
        self.holder = Return::Pinged(ping);
        let _ = self.validate_now().await;
    }

    /// Validates the connection now, within `validation_timeout`; a
    /// connection that fails (or whose validation is cancelled) is discarded
    /// when the guard drops.
    pub(crate) async fn validate_now(&mut self) -> Result<(), String> {
        let Self {
            pool,
            checkout,
            discard_as,
            ..
        } = self;
        *discard_as = Some(CloseReason::Interrupted);
        let shared = &*pool.shared;
        let conn = &mut checkout.as_mut().expect(HOLDS).conn;
        let limit = shared.config.validation_timeout;
        let outcome = rt::timeout_at(
            Instant::now() + limit,
            shared.manager.validate(&mut conn.raw),
        )
        .await;
        if let Some(Ok(())) = outcome {
            conn.last_checked = shared.clock.now();
            *discard_as = None;
            return Ok(());
        }
        shared.stats.validation_failures.fetch_add(1, Relaxed);
        *discard_as = Some(CloseReason::ValidationFailed);
        Err(match outcome {
            Some(Err(error)) => format!("validation failed: {error}"),
            _ => format!("validation timed out after {limit:?}"),
        })
    }
}

impl<M: Manager> Deref for PooledConnection<M> {
    type Target = M::Connection;

    fn deref(&self) -> &M::Connection {
        &self.checkout().conn.raw
    }
}

impl<M: Manager> DerefMut for PooledConnection<M> {
    fn deref_mut(&mut self) -> &mut M::Connection {
        &mut self.conn_mut().raw
    }
}

impl<M: Manager> std::fmt::Debug for PooledConnection<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledConnection")
            .field("pool", &self.pool.name())
            .field("id", &self.checkout.as_ref().map(|c| c.conn.id))
            .finish_non_exhaustive()
    }
}

impl<M: Manager> Drop for PooledConnection<M> {
    fn drop(&mut self) {
        if let Some(checkout) = self.checkout.take() {
            let holder = std::mem::replace(&mut self.holder, Return::Used);
            self.pool.release(checkout, holder, self.discard_as);
        }
    }
}
