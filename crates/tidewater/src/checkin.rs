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

use std::panic::Location;
use std::sync::atomic::Ordering::SeqCst;

use crate::clock::Tick;
use crate::error::Breakage;
use crate::guard::{Checkout, Conn, Retired, Return};
use crate::idle::RecordKey;
use crate::leaks::Record;
use crate::manager::Manager;
use crate::pool::Pool;
use crate::rt::{self, fence};
use crate::state::{Settled, State};
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
        let ping = match how {
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
            let never_served =
                reason == CloseReason::Broken && std::mem::take(&mut conn.unused) && ping.is_none();
            let before = self.end_record_unlocked(record);
            self.close_retired(conn.retire(reason));
            warn_if_suspect(self, before, now);
            if never_served {
                self.arrival_failed(None, Breakage::FirstUse, rt::Instant::now());
            }
            return;
        }
        if ping.is_none() && std::mem::take(&mut conn.unused) {
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
            self.make_idle(conn, Ok(Some(record)), now);
        } else {
            self.deliver(conn, Some(record), now);
        }
    }

    /// Gives a usable connection to the oldest waiter, or makes it idle, or
    /// closes it when the pool no longer wants it. `record` is its checkout
    /// record when it comes from one; it is ended when the connection goes
    /// idle or is closed. A connection handed straight to a waiter gets its
    /// record kept with the queue, under the lock the hand-off takes anyway,
    /// so that a connection passed from caller to caller (every `get()`
    /// queues) touches no shard.
    pub(crate) fn deliver(
        &self,
        mut conn: Conn<M::Connection>,
        mut record: Option<RecordKey>,
        now: Tick,
    ) {
        loop {
            let next = self.with_state(|pool, state| {
                if let Some(reason) = pool.must_go(state.closed, &conn, now) {
                    return Next::Close(reason, pool.end_record(state, record));
                }
                let Some(waiter) = state.waiters.pop_front(now) else {
                    return Next::Idle(pool.end_queue_record(state, record));
                };
                let (record, before) =
                    pool.hand_record_on(state, record, conn.id, waiter.caller, now);
                Next::Give(waiter, record, before)
            });
            let (waiter, record_key) = match next {
                Next::Give(waiter, record, before) => {
                    if let Some(before) = before {
                        warn_suspect(self, *before, now);
                    }
                    (waiter, record)
                }
                Next::Idle(record) => return self.make_idle(conn, record, now),
                Next::Close(reason, before) => {
                    warn_if_suspect(self, before, now);
                    return self.close_retired(conn.retire(reason));
                }
            };
            let checkout = Checkout {
                conn,
                record: record_key,
                since: now,
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

    /// Under the lock: the record of a connection handed to a caller at
    /// `caller`, kept with the queue (moved there from its shard, or new).
    /// Also returns the record as it was, when it had been reported as a
    /// leak suspect.
    fn hand_record_on(
        &self,
        state: &mut State<M::Connection>,
        record: Option<RecordKey>,
        connection_id: u64,
        caller: &'static Location<'static>,
        now: Tick,
    ) -> (RecordKey, Option<Box<Record>>) {
        if let Some(key) = record.and_then(RecordKey::queue_key) {
            return (
                RecordKey::with_queue(key),
                state.handed.hand_on(key, caller, now),
            );
        }
        let before = record
            .and_then(|record| self.shared.idle.check_in(record, None))
            .filter(|before| before.reported)
            .map(Box::new);
        let key = state.handed.insert(Record {
            caller,
            since: now,
            connection_id,
            reported: false,
        });
        (RecordKey::with_queue(key), before)
    }

    /// Under the lock: ends a checkout record, wherever it is kept.
    fn end_record(
        &self,
        state: &mut State<M::Connection>,
        record: Option<RecordKey>,
    ) -> Option<Record> {
        let record = record?;
        match record.queue_key() {
            Some(key) => state.handed.remove(key),
            None => self.shared.idle.check_in(record, None),
        }
    }

    /// Under the lock: ends a checkout record the queue keeps; a record in a
    /// shard is left for the caller (it ends with the connection's return
    /// to the shard).
    fn end_queue_record(
        &self,
        state: &mut State<M::Connection>,
        record: Option<RecordKey>,
    ) -> Result<Option<RecordKey>, Option<Record>> {
        match record.and_then(RecordKey::queue_key) {
            Some(key) => Err(state.handed.remove(key)),
            None => Ok(record),
        }
    }

    /// Ends a checkout record, wherever it is kept (taking the pool's lock
    /// when the queue keeps it).
    fn end_record_unlocked(&self, record: RecordKey) -> Option<Record> {
        match record.queue_key() {
            Some(key) => self.with_state(|_, state| state.handed.remove(key)),
            None => self.shared.idle.check_in(record, None),
        }
    }

    /// Makes a connection idle in this thread's shard (ending its checkout
    /// record, if any), then serves any caller that joined the queue
    /// meanwhile: the connection is in the shard before the fence, and a
    /// caller joining publishes itself before its own, so one of the two
    /// sees the other.
    fn make_idle(
        &self,
        conn: Conn<M::Connection>,
        record: Result<Option<RecordKey>, Option<Record>>,
        now: Tick,
    ) {
        let shared = &*self.shared;
        let before = match record {
            Ok(Some(record)) if record.queue_key().is_none() => {
                shared.idle.check_in(record, Some(conn))
            }
            Ok(Some(record)) => {
                let before = self.end_record_unlocked(record);
                shared.idle.push(conn);
                before
            }
            Ok(None) => {
                shared.idle.push(conn);
                None
            }
            Err(before) => {
                shared.idle.push(conn);
                before
            }
        };
        warn_if_suspect(self, before, now);
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
        let _ = self.end_record_unlocked(checkout.record);
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

/// Where a connection coming back goes, and what became of its record.
enum Next<T> {
    /// To this waiter, with its record (and the record as it was, if it
    /// had been reported as a leak suspect).
    Give(Waiter<T>, RecordKey, Option<Box<Record>>),
    /// Idle: its record in a shard (ended on the way in), or the queue's
    /// record already ended.
    Idle(Result<Option<RecordKey>, Option<Record>>),
    /// Closed, for this reason; its record ended.
    Close(CloseReason, Option<Record>),
}
