//! The pool's locked state, and the rules that change it.
//!
//! [`State`] holds what needs the pool's one mutex: the waiter queue, the
//! closed flag, the circuit breaker and the next connection id. The slot
//! counts (`slots.rs`) and idle connections (`idle.rs`) live outside it but
//! change under it whenever a rule here reads them. Every function here
//! runs with the lock held and does no I/O; what it leaves to do once the
//! lock is released (giving connections or errors to waiters, closing
//! connections) comes back as a [`Settled`].
//!
//! The rules, and where they live:
//! - joining the queue or taking the idle connection it finds: [`Pool::join`];
//! - whether a connection must be closed rather than kept: [`Pool::must_go`];
//! - what idle connections owe the queue and a closed or shrunk pool:
//!   [`Pool::settle`];
//! - callers whose deadline passed: [`Pool::expire`];
//! - how many connection attempts to run: [`Pool::wanted_openers`].

use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;

use crate::breaker::Breaker;
use crate::clock::Tick;
use crate::error::Error;
use crate::guard::{Checkout, Conn, Retired};
use crate::leaks::Checkouts;
use crate::manager::Manager;
use crate::pool::Pool;
use crate::rt::{Instant, fence};
use crate::slots::{OpenSlot, SlotCounts};
use crate::stats::{CloseReason, PoolStatus};
use crate::waiters::{Handoff, Waiter, WaiterKey, WaiterQueue};

/// What a waiter receives: a connection, or why none came (boxed: errors
/// are rare, and the hand-off moves this value).
pub(crate) type Served<C> = Result<Checkout<C>, Box<Error>>;

/// Everything behind the pool's lock.
pub(crate) struct State<C> {
    pub(crate) waiters: WaiterQueue<Served<C>>,
    /// Checkout records of connections handed straight from caller to
    /// caller (see `checkin.rs`).
    pub(crate) handed: Checkouts,
    pub(crate) closed: bool,
    pub(crate) breaker: Breaker,
    /// New connections that arrived broken in a row (for the error).
    pub(crate) broken_arrivals: u32,
    next_id: u64,
    /// When the maintenance task looks at the queue next, while it sleeps.
    pub(crate) sweep_at: Option<Tick>,
    /// The number of waiters the shards were last told of.
    published_waiters: u32,
}

impl<C> State<C> {
    pub(crate) fn new(breaker: Breaker) -> Self {
        Self {
            waiters: WaiterQueue::new(),
            handed: Checkouts::default(),
            closed: false,
            breaker,
            broken_arrivals: 0,
            next_id: 0,
            sweep_at: None,
            published_waiters: 0,
        }
    }
}

/// What a caller found under the lock.
pub(crate) enum Joined<C> {
    /// An idle connection, checked out to it.
    Idle(Checkout<C>),
    /// A place in the queue; the connection will arrive through the
    /// hand-off the caller passed.
    Queued(WaiterKey),
}

/// What a change under the pool's lock leaves to do once it is released.
#[must_use = "waiters to serve and connections to close"]
pub(crate) struct Settled<C> {
    pub(crate) deliveries: Vec<(Waiter<Served<C>>, Served<C>)>,
    pub(crate) gone: Vec<Retired<C>>,
}

impl<C> Settled<C> {
    pub(crate) fn new() -> Self {
        Self {
            deliveries: Vec::new(),
            gone: Vec::new(),
        }
    }
}

impl<M: Manager> Pool<M> {
    /// Under the lock: a caller that found no idle connection on the fast
    /// path either takes one now or joins the queue. Fails at once when the
    /// pool is closed, the breaker is open and cannot promise a quick
    /// answer, or the queue is full.
    ///
    /// The caller registers in the queue before it looks at the shards
    /// again, and `release` returns a connection to a shard before it looks
    /// at the waiter count; a full fence on both sides makes sure one of the
    /// two sees the other, so no caller waits while a connection sits idle.
    pub(crate) fn join(
        &self,
        caller: &'static Location<'static>,
        deadline: Tick,
        now: Tick,
        handoff: Option<Arc<Handoff<Served<M::Connection>>>>,
    ) -> Result<Joined<M::Connection>, Error> {
        let shared = &*self.shared;
        let mut state = self.lock();
        if state.closed {
            return Err(Error::Closed {
                pool: shared.name.clone(),
            });
        }
        let Some(handoff) = handoff else {
            // `try_get`: no place in the queue, only what is idle now.
            return match shared.idle.take(caller, now) {
                Some(checkout) => Ok(Joined::Idle(checkout)),
                None => Err(Error::NoIdleConnection {
                    status: self.status_of(&state),
                }),
            };
        };
        let first = state.waiters.len() == 0;
        let attempts_seen = state.breaker.attempts();
        let key = state.waiters.push(
            Waiter {
                handoff,
                caller,
                deadline,
                attempts_seen,
            },
            now,
        );
        self.publish(&mut state);
        if first {
            // This caller is the one who tells `make_idle` that someone
            // waits, so it is the one who must look at the shards once
            // more. (Later callers find that flag already up: a connection
            // made idle meanwhile goes to the queue through `settle`.)
            fence(SeqCst); // pairs with the fence in `make_idle`
            if let Some(checkout) = shared.idle.take(caller, now) {
                state.waiters.remove(key, now);
                self.publish(&mut state);
                return Ok(Joined::Idle(checkout));
            }
        }
        let counts = shared.slots.counts();
        if let Some(refusal) = self.refusal(&state, now, counts) {
            state.waiters.remove(key, now);
            self.publish(&mut state);
            return Err(refusal);
        }
        if counts.room() > 0 {
            self.start_openers(&mut state);
        }
        if first && state.breaker.failures() > 0 {
            // Openers backing off may start sooner now that callers wait.
            shared.pacing.notify_waiters();
        }
        if state.sweep_at.is_some_and(|at| deadline < at) {
            state.sweep_at = Some(deadline);
            shared.sweep.notify_one();
        }
        Ok(Joined::Queued(key))
    }

    /// Why a caller that just joined may not wait, if it may not: the
    /// breaker is open and cannot promise a quick answer, or too many wait.
    fn refusal(
        &self,
        state: &State<M::Connection>,
        now: Tick,
        counts: SlotCounts,
    ) -> Option<Error> {
        let shared = &*self.shared;
        if state.breaker.is_open() {
            let now = shared.clock.instant(now);
            if !state.breaker.admits_waiters(now) {
                return Some(self.unavailable(state, now));
            }
        }
        // Each connection the pool may still open serves one caller; beyond
        // those, at most `max_waiters` wait for one to come back.
        let room = counts.max.saturating_sub(counts.open);
        let limit = shared.config.max_waiters.saturating_add(room);
        if state.waiters.len() > limit {
            return Some(Error::QueueFull {
                status: self.status_of(state),
            });
        }
        None
    }

    /// The error for a caller turned away (or failed) by the open breaker.
    pub(crate) fn unavailable(&self, state: &State<M::Connection>, now: Instant) -> Error {
        Error::Unavailable {
            cause: state
                .breaker
                .last_error()
                .cloned()
                .expect("an open breaker has a cause"),
            failures: state.breaker.failures(),
            retry_after: state.breaker.retry_after(now, state.waiters.len() > 0),
            status: self.status_of(state),
        }
    }

    /// Why a connection must be closed rather than kept, if it must: the
    /// pool is closed, the connection's lifetime is over, or the pool has
    /// more open connections than it may.
    pub(crate) fn must_go(
        &self,
        closed: bool,
        conn: &Conn<M::Connection>,
        now: Tick,
    ) -> Option<CloseReason> {
        let counts = self.shared.slots.counts();
        if closed {
            Some(CloseReason::PoolClosed)
        } else if conn.expired(now) {
            Some(CloseReason::MaxLifetime)
        } else if counts.open > counts.max {
            Some(self.shrunk_by())
        } else {
            None
        }
    }

    /// Why connections above the pool's size are closed: `resize()` put
    /// the ceiling below them, or the adaptive limit fell.
    fn shrunk_by(&self) -> CloseReason {
        let shared = &*self.shared;
        if shared.slots.counts().open > shared.sizing.ceiling() {
            CloseReason::Resized
        } else {
            CloseReason::Limited
        }
    }

    /// Under the lock: brings the idle connections in line with the pool.
    /// A closed pool closes them all; a pool above its size closes the
    /// surplus; waiting callers get the rest, oldest first.
    pub(crate) fn settle(
        &self,
        state: &mut State<M::Connection>,
        now: Tick,
    ) -> Settled<M::Connection> {
        let shared = &*self.shared;
        let mut settled = Settled::new();
        let counts = shared.slots.counts();
        let (reason, surplus) = if state.closed {
            (CloseReason::PoolClosed, usize::MAX)
        } else {
            (
                self.shrunk_by(),
                counts.open.saturating_sub(counts.max) as usize,
            )
        };
        if surplus > 0 {
            let retired = shared
                .idle
                .take_where(|_, picked| (picked < surplus).then_some(reason));
            settled.gone.extend(
                retired
                    .into_iter()
                    .map(|(conn, reason)| conn.retire(reason)),
            );
        }
        while let Some(caller) = state.waiters.front().map(|waiter| waiter.caller) {
            let Some(checkout) = shared.idle.take(caller, now) else {
                break;
            };
            let waiter = state.waiters.pop_front(now).expect("a front waiter");
            settled.deliveries.push((waiter, Ok(checkout)));
        }
        if !settled.gone.is_empty() {
            self.start_openers(state);
        }
        self.publish(state);
        settled
    }

    /// Under the lock: the callers whose deadline has passed, with their
    /// timeout errors; returns them and the next deadline in the queue.
    pub(crate) fn expire(
        &self,
        state: &mut State<M::Connection>,
        now: Tick,
    ) -> (Settled<M::Connection>, Option<Tick>) {
        let mut settled = Settled::new();
        let timeout = self.shared.config.acquire_timeout;
        while let Some(waiter) = state
            .waiters
            .pop_front_if(now, |waiter| waiter.deadline <= now)
        {
            let error = self.timeout_error(state, timeout + now.since(waiter.deadline));
            settled.deliveries.push((waiter, Err(Box::new(error))));
        }
        if !settled.deliveries.is_empty() {
            self.publish(state);
        }
        (settled, state.waiters.front().map(|waiter| waiter.deadline))
    }

    /// A timeout error for a caller that waited `waited` (counted when the
    /// caller gets it, in `acquire`).
    pub(crate) fn timeout_error(
        &self,
        state: &State<M::Connection>,
        waited: std::time::Duration,
    ) -> Error {
        Error::Timeout {
            waited,
            status: self.status_of(state),
            last_connect_error: state.breaker.last_error().cloned(),
        }
    }

    /// Under the lock: every waiter that joined before connection attempt
    /// `attempt` started gets `error`.
    pub(crate) fn fail_waiters(
        &self,
        state: &mut State<M::Connection>,
        attempt: u64,
        error: impl Fn() -> Error,
    ) -> Settled<M::Connection> {
        let mut settled = Settled::new();
        let now = self.shared.clock.now();
        while let Some(waiter) = state
            .waiters
            .pop_front_if(now, |waiter| waiter.attempts_seen < attempt)
        {
            settled.deliveries.push((waiter, Err(Box::new(error()))));
        }
        self.publish(state);
        settled
    }

    /// How many connection attempts should be running now: enough for the
    /// callers waiting and the `min_idle` shortfall, within the room left
    /// and `max_connecting`; one probe while the breaker is open.
    pub(crate) fn wanted_openers(&self, state: &State<M::Connection>) -> u32 {
        let shared = &*self.shared;
        let config = &shared.config;
        let counts = shared.slots.counts();
        let room = counts.max.saturating_sub(counts.open);
        if state.closed || room == 0 {
            return 0;
        }
        let demand = if state.breaker.is_open() {
            1
        } else {
            let idle = shared.idle.len() + shared.slots.pinging();
            state
                .waiters
                .len()
                .max(config.min_idle.saturating_sub(idle))
        };
        demand.min(config.max_connecting).min(room)
    }

    /// Starts connection attempts up to [`Pool::wanted_openers`], each with
    /// its reserved slot.
    pub(crate) fn start_openers(&self, state: &mut State<M::Connection>) {
        let shared = &*self.shared;
        let wanted = self.wanted_openers(state);
        if wanted == 0 {
            return;
        }
        // At most `wanted` spawns: a runtime shutting down drops each task
        // as it is spawned, giving its slot straight back.
        for _ in 0..wanted {
            let Some(slot) = shared.slots.reserve_attempt(wanted) else {
                break;
            };
            crate::rt::spawn(crate::connect::run_opener(
                Arc::downgrade(&self.shared),
                shared.manager.clone(),
                shared.hooks.after_connect.clone(),
                shared.pacing.clone(),
                slot,
            ));
        }
    }

    /// A connection for `raw`, just opened: a fresh id, its lifetime's end.
    pub(crate) fn new_conn(
        &self,
        state: &mut State<M::Connection>,
        raw: M::Connection,
        slot: OpenSlot,
        now: Tick,
    ) -> Conn<M::Connection> {
        state.next_id += 1;
        let config = &self.shared.config;
        let expires_at = config.max_lifetime.map_or(Tick::NEVER, |lifetime| {
            now.after(lifetime.mul_f64(1.0 - config.max_lifetime_jitter * fastrand::f64()))
        });
        Conn::new(raw, state.next_id, slot, now, expires_at)
    }

    /// Publishes the queue's length, the closed flag and the breaker for
    /// readers without the lock (and for `release`'s side of the handshake).
    pub(crate) fn publish(&self, state: &mut State<M::Connection>) {
        let waiters = state.waiters.len();
        if waiters != state.published_waiters {
            let delta = i64::from(waiters) - i64::from(state.published_waiters);
            self.shared.idle.add_waiting(delta);
            state.published_waiters = waiters;
        }
        self.shared
            .gauges
            .publish(waiters > 0, state.closed, state.breaker.is_open());
    }

    /// The status as `state` has it (under the lock).
    pub(crate) fn status_of(&self, state: &State<M::Connection>) -> PoolStatus {
        let shared = &*self.shared;
        shared.gauges.status_of(
            &shared.name,
            shared.sizing.ceiling(),
            shared.slots.counts(),
            state.waiters.len(),
            shared.idle.len(),
            state.breaker.is_open(),
        )
    }
}
