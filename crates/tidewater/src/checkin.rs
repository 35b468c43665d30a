//! Connections coming back: from a guard, from a waiter that left before
//! picking its connection up, or new from an opener; and where each goes
//! (the oldest waiter, the idle shards, or closed).
//!
//! A return normally goes to the calling thread's idle shard without the
//! pool's lock. When callers wait, it goes to the oldest of them: the
//! waiter is taken off the queue under the lock, and the connection handed
//! to it after the lock is released ([`Pool::deliver`]), so the lock is held
//! only for the queue operation. A connection that must go (broken,
//! returned while panicking, expired, the pool closed or shrunk) is retired
//! at once (its slot freed) and closed outside every lock.

use std::sync::atomic::Ordering::SeqCst;

use crate::clock::Tick;
use crate::error::Breakage;
use crate::guard::{Checkout, Conn, Retired, Return};
use crate::idle::RecordKey;
use crate::leaks::Record;
use crate::manager::Manager;
use crate::pool::Pool;
use crate::rt::{self, fence};
use crate::state::Settled;
use crate::stats::CloseReason;
use crate::waiters::Waiter;

impl<M: Manager> Pool<M> {
    /// Takes back a connection from a guard. It is closed when `forced`
    /// says so, when it is broken, or when it comes back from a panicking
    /// thread; otherwise it goes to the oldest waiter, or idle.
    pub(crate) fn release(
        &self,
        checkout: Checkout<M::Connection>,
        how: Return,
        forced: Option<CloseReason>,
    ) {
        let shared = &*self.shared;
        let now = shared.clock.now();
        let Checkout {
            mut conn,
            record,
            since,
        } = checkout;
        let reason = forced.or_else(|| {
            if std::thread::panicking() {
                Some(CloseReason::Panicked)
            } else if shared.manager.is_broken(&mut conn.raw) {
                Some(CloseReason::Broken)
            } else {
                None
            }
        });
        // A ping's slot is given back when this function ends, once the
        // connection is in its place.
        let _ping = match how {
            Return::Used => {
                shared.idle.record_use(now.nanos_since(since));
                if reason.is_none() {
                    conn.needs_reset = shared.manager.needs_reset(&mut conn.raw);
                    conn.last_used = now;
                    conn.last_checked = now;
                }
                None
            }
            Return::Pinged(slot) => Some(slot),
        };
        if let Some(reason) = reason {
            let never_served = reason == CloseReason::Broken
                && std::mem::take(&mut conn.unused)
                && matches!(_ping, None);
            let before = shared.idle.check_in(record, None);
            self.close_retired(conn.retire(reason));
            warn_if_suspect(self, before, now);
            if never_served {
                self.arrival_failed(None, Breakage::FirstUse, rt::Instant::now());
            }
            return;
        }
        if _ping.is_none() && std::mem::take(&mut conn.unused) {
            self.proven();
        }
        let flags = shared.gauges.flags();
        if flags.breaker_open() {
            self.database_is_back();
        }
        // Straight back to a shard when nobody waits and, as far as the
        // gauges tell, it need not be closed.
        let counts = shared.slots.counts();
        if flags.quiet() && counts.open <= counts.max && !conn.expired(now) {
            self.make_idle(conn, Some(record), now);
        } else {
            self.deliver(conn, Some(record), now);
        }
    }

    /// Gives a usable connection to the oldest waiter, or makes it idle, or
    /// closes it when the pool no longer wants it. `record` is its checkout
    /// record when it comes from one: passed on to the next caller as it
    /// is, or removed when the connection goes idle or is closed.
    pub(crate) fn deliver(
        &self,
        mut conn: Conn<M::Connection>,
        mut record: Option<RecordKey>,
        now: Tick,
    ) {
        let shared = &*self.shared;
        loop {
            let next =
                self.with_state(|pool, state| match pool.must_go(state.closed, &conn, now) {
                    Some(reason) => Next::Close(reason),
                    None => state.waiters.pop_front().map_or(Next::Idle, Next::Give),
                });
            let waiter = match next {
                Next::Give(waiter) => waiter,
                Next::Idle => return self.make_idle(conn, record, now),
                Next::Close(reason) => {
                    if let Some(record) = record {
                        warn_if_suspect(self, shared.idle.check_in(record, None), now);
                    }
                    return self.close_retired(conn.retire(reason));
                }
            };
            let checkout = match record {
                Some(record) => {
                    if let Some(before) = shared.idle.hand_on(record, waiter.caller, now) {
                        warn_suspect(self, *before, now);
                    }
                    Checkout {
                        conn,
                        record,
                        since: now,
                    }
                }
                None => shared.idle.check_out(conn, waiter.caller, now),
            };
            match waiter.give(Ok(checkout)) {
                Ok(()) => return,
                // The caller left after it was taken off the queue: on to
                // the next one.
                Err(back) => {
                    let back = back.expect("the checkout given");
                    conn = back.conn;
                    record = Some(back.record);
                }
            }
        }
    }

    /// Makes a connection idle in this thread's shard (ending its checkout
    /// record, if any), then serves any caller that joined the queue
    /// meanwhile: the connection is in the shard before the fence, and a
    /// caller joining publishes itself before its own, so one of the two
    /// sees the other.
    fn make_idle(&self, conn: Conn<M::Connection>, record: Option<RecordKey>, now: Tick) {
        let shared = &*self.shared;
        match record {
            Some(record) => warn_if_suspect(self, shared.idle.check_in(record, Some(conn)), now),
            None => shared.idle.push(conn),
        }
        fence(SeqCst); // pairs with the fence in `join`, `close` and `resize`
        if shared.gauges.needs_settling(shared.slots.counts()) {
            self.with_state(|pool, state| pool.settle(state, now))
                .finish(self);
        }
    }

    /// A connection given to a caller who left before picking it up: it
    /// goes on as if returned unused.
    pub(crate) fn put_back(&self, checkout: Checkout<M::Connection>) {
        self.deliver(
            checkout.conn,
            Some(checkout.record),
            self.shared.clock.now(),
        );
    }

    /// Takes a connection out of the pool for good (see
    /// [`PooledConnection::detach`](crate::PooledConnection::detach)).
    pub(crate) fn detach(&self, checkout: Checkout<M::Connection>) -> M::Connection {
        let shared = &*self.shared;
        let _ = shared.idle.check_in(checkout.record, None);
        let retired = checkout.conn.retire(CloseReason::Detached);
        shared.stats.count_closed(retired.reason, 1);
        self.slot_freed();
        retired.raw
    }

    /// Closes a retired connection (its slot is already free), then lets
    /// the pool open a replacement if callers wait.
    pub(crate) fn close_retired(&self, retired: Retired<M::Connection>) {
        self.discard(retired);
        self.slot_freed();
    }

    /// Closes a connection the pool no longer counts.
    pub(crate) fn discard(&self, retired: Retired<M::Connection>) {
        tracing::debug!(
            pool = %self.shared.name, connection = retired.id, reason = retired.reason.as_str(),
            "closing connection"
        );
        self.shared.stats.count_closed(retired.reason, 1);
        drop(retired);
    }

    /// After a slot was given back: start a connection attempt if callers
    /// wait (or `min_idle` is short), and tell `close()` when the last
    /// connection of a closed pool is gone.
    pub(crate) fn slot_freed(&self) {
        let shared = &*self.shared;
        let flags = shared.gauges.flags();
        if flags.closed() {
            if shared.slots.counts().open == 0 {
                shared.drained.notify_waiters();
            }
        } else if flags.waiting() || shared.config.min_idle > 0 {
            self.with_state(|pool, state| pool.start_openers(state));
        }
    }

    /// A connection came back healthy while the breaker was open: the
    /// database is back.
    fn database_is_back(&self) {
        let closed_now = self.with_state(|pool, state| {
            let closed_now = state.breaker.on_success();
            state.broken_arrivals = 0;
            pool.start_openers(state);
            closed_now
        });
        if closed_now {
            tracing::info!(pool = %self.shared.name, "a connection came back healthy: circuit breaker closed");
        }
    }
}

impl<C> Settled<C> {
    /// Gives the waiters served what they were given (a connection given to
    /// a caller who has left goes on to the next), and closes the
    /// connections that had to go.
    pub(crate) fn finish<M: Manager<Connection = C>>(self, pool: &Pool<M>) {
        let Self { deliveries, gone } = self;
        let freed = !gone.is_empty();
        for retired in gone {
            pool.discard(retired);
        }
        for (waiter, served) in deliveries {
            if let Err(Ok(checkout)) = waiter.give(served) {
                pool.put_back(checkout);
            }
        }
        if freed {
            pool.slot_freed();
        }
    }
}

/// Logs a leak suspect handed back (or on).
#[cold]
fn warn_suspect<M: Manager>(pool: &Pool<M>, record: Record, now: Tick) {
    tracing::warn!(
        pool = %pool.shared.name,
        connection = record.connection_id,
        caller = %record.caller,
        held_for = ?now.since(record.since),
        "leak suspect returned to the pool"
    );
}

/// Logs a leak suspect coming back, once its checkout record is gone.
#[inline]
fn warn_if_suspect<M: Manager>(pool: &Pool<M>, before: Option<Record>, now: Tick) {
    if let Some(record) = before.filter(|record| record.reported) {
        warn_suspect(pool, record, now);
    }
}

/// Where a connection coming back goes.
enum Next<T> {
    Give(Waiter<T>),
    Idle,
    Close(CloseReason),
}
