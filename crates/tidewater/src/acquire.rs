//! Taking a connection: the fast path (an idle connection on this thread's
//! shard, no pool lock), joining the queue, waiting, and preparing the
//! connection for the caller.
//!
//! A waiting caller arms no timer of its own: every caller gets the same
//! `acquire_timeout`, so the queue is in deadline order and the pool's
//! maintenance task, sleeping until the front's deadline, times out
//! whoever is late. A caller takes the pool's lock once to join the queue;
//! after that its future only looks at its [`Handoff`], and takes the pool's
//! lock again only if it is dropped while still queued.

use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};

use tracing::Span;

use crate::clock::Tick;
use crate::error::Error;
use crate::guard::{Checkout, Needs, PooledConnection, Prepared};
use crate::manager::Manager;
use crate::pool::Pool;
use crate::state::{Joined, Served};
use crate::waiters::{Handoff, WaiterKey};

impl<M: Manager> Pool<M> {
    /// The body of `get()` (`wait`) and `try_get()`. A caller served at
    /// once from an idle connection that needs no check costs no span; one
    /// that waits, or whose connection is validated or reset, gets a
    /// [`WaitTrace`] covering all of it.
    pub(crate) async fn acquire(
        &self,
        caller: &'static Location<'static>,
        wait: bool,
    ) -> Result<PooledConnection<M>, Error> {
        let clock = &self.shared.clock;
        let start = clock.now();
        let deadline = start.after(self.shared.config.acquire_timeout);
        let mut now = start;
        let mut waited = false;
        let mut trace = WaitTrace::default();
        loop {
            let checkout = match self.take_idle(caller, now) {
                Some(checkout) => checkout,
                None => {
                    trace.begin(&self.shared.name);
                    let queue = Queue {
                        pool: self,
                        caller,
                        deadline,
                        now,
                        wait,
                        state: QueueState::Joining,
                    };
                    match queue.await {
                        Ok((checkout, queued)) => {
                            waited |= queued;
                            trace.queued |= queued;
                            checkout
                        }
                        Err(error) => return Err(trace.failed(self.counted(error))),
                    }
                }
            };
            let mut conn = PooledConnection::new(self.clone(), checkout);
            let prepared = match conn.needs() {
                Needs::Nothing => Prepared::Ready { checked: false },
                Needs::Discard => Prepared::Discard,
                Needs::Check(checks) => {
                    trace.begin(&self.shared.name);
                    trace.checked = true;
                    conn.check(deadline, checks).await
                }
            };
            match prepared {
                Prepared::Ready { checked: true } => {
                    self.shared.idle.record_wait(clock.now().nanos_since(start));
                    trace.served();
                    return Ok(conn);
                }
                // Handed over from the queue: the wait ends when the pool
                // handed it over (the checkout's time), with no clock read.
                Prepared::Ready { checked: false } if waited => {
                    let handed_over = conn.checked_out_at();
                    self.shared.idle.record_wait(handed_over.nanos_since(start));
                    trace.served();
                    return Ok(conn);
                }
                Prepared::Ready { .. } => {
                    self.shared.idle.count_direct();
                    trace.served();
                    return Ok(conn);
                }
                Prepared::Discard => now = clock.now(),
                Prepared::OutOfTime => {
                    let error = self.timeout_error(&self.lock(), clock.now().since(start));
                    return Err(trace.failed(self.counted(error)));
                }
            }
        }
    }

    /// Counts an error a caller gets, by kind, in the statistics.
    fn counted(&self, error: Error) -> Error {
        let stats = &self.shared.stats;
        let counter = match &error {
            Error::Timeout { .. } => &stats.timeouts,
            Error::Unavailable { .. } => &stats.rejected_unavailable,
            Error::QueueFull { .. } => &stats.rejected_queue_full,
            _ => return error,
        };
        counter.fetch_add(1, Relaxed);
        error
    }

    /// An idle connection from the shards without the pool's lock, when
    /// nobody waits (who would come first) and the pool is open.
    fn take_idle(
        &self,
        caller: &'static Location<'static>,
        now: Tick,
    ) -> Option<Checkout<M::Connection>> {
        let shared = &*self.shared;
        if shared.gauges.flags().quiet() {
            shared.idle.take(caller, now)
        } else {
            None
        }
    }
}

/// A caller that found no idle connection on the fast path. Its first poll
/// joins the queue under the pool's lock (or takes the idle connection it
/// finds there), its waker already in its hand-off. It resolves when
/// the pool gives it a connection (`true`: it waited in the queue) or an
/// error. Dropped while still queued, it leaves the queue; a connection
/// given to it but not picked up goes on to the next caller.
struct Queue<'a, M: Manager> {
    pool: &'a Pool<M>,
    caller: &'static Location<'static>,
    deadline: Tick,
    now: Tick,
    /// `false` for `try_get`: take an idle connection or fail, never queue.
    wait: bool,
    state: QueueState<M::Connection>,
}

enum QueueState<C> {
    Joining,
    Queued(WaiterKey, Arc<Handoff<Served<C>>>),
    Done,
}

impl<M: Manager> Future for Queue<'_, M> {
    type Output = Result<(Checkout<M::Connection>, bool), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let served = match &this.state {
            QueueState::Joining => {
                let handoff = this.wait.then(|| Handoff::for_caller(cx.waker()));
                match this
                    .pool
                    .join(this.caller, this.deadline, this.now, handoff.clone())
                {
                    Ok(Joined::Queued(key)) => {
                        let handoff = handoff.expect("only a waiting caller queues");
                        this.state = QueueState::Queued(key, handoff);
                        return Poll::Pending;
                    }
                    Ok(Joined::Idle(checkout)) => Ok((checkout, false)),
                    Err(error) => Err(error),
                }
            }
            QueueState::Queued(_, handoff) => match handoff.poll(cx.waker()) {
                Some(served) => served
                    .map(|checkout| (checkout, true))
                    .map_err(|error| *error),
                None => return Poll::Pending,
            },
            QueueState::Done => unreachable!("polled after completion"),
        };
        if let QueueState::Queued(_, handoff) = std::mem::replace(&mut this.state, QueueState::Done)
        {
            Handoff::recycle(handoff);
        }
        Poll::Ready(served)
    }
}

impl<M: Manager> Drop for Queue<'_, M> {
    fn drop(&mut self) {
        let QueueState::Queued(key, handoff) = &self.state else {
            return;
        };
        let pool = self.pool;
        let now = pool.shared.clock.now();
        if pool.with_state(|_, state| state.waiters.remove(*key, now)) {
            return;
        }
        // Taken off the queue already: whatever it was given (now, or
        // later) goes back.
        if let Some(Ok(checkout)) = handoff.leave() {
            pool.put_back(checkout);
        }
    }
}

/// The target of the wait span: a filter can turn it off
/// (`tidewater::wait=off`) without silencing the pool's logs.
const WAIT_TARGET: &str = "tidewater::wait";

/// The span of a `get()` that waits, opens or checks a connection, named
/// after OpenTelemetry's `db.client.connection.wait_time` (the time it took
/// to obtain an open connection from the pool) and carrying its pool
/// attribute, so that a service exporting through tracing-opentelemetry
/// sees pool waits in its traces. Its duration is the wait; its parent is
/// the caller's current span.
///
/// It is opened at the first point the fast path fails and never entered
/// (the pool's own polls would pay an enter and exit each), and its fields
/// are written once, at the end; when no subscriber wants it, nothing is
/// written at all.
#[derive(Default)]
struct WaitTrace {
    span: Option<Span>,
    queued: bool,
    checked: bool,
}

impl WaitTrace {
    /// Opens the span, unless it is open already or no subscriber wants
    /// it. Asking first also keeps it out of `log` (tracing's `log`
    /// feature would otherwise turn every span into log lines when no
    /// tracing subscriber is set).
    fn begin(&mut self, pool: &str) {
        if self.span.is_none()
            && tracing::enabled!(
                kind: tracing::metadata::Kind::SPAN,
                target: WAIT_TARGET,
                tracing::Level::INFO
            )
        {
            self.span = Some(tracing::info_span!(
                target: WAIT_TARGET,
                "db.client.connection.wait",
                "db.client.connection.pool.name" = pool,
                "tidewater.queued" = tracing::field::Empty,
                "tidewater.checked" = tracing::field::Empty,
                "tidewater.outcome" = tracing::field::Empty,
                "error.type" = tracing::field::Empty,
                "otel.status_code" = tracing::field::Empty,
            ));
        }
    }

    /// Writes that the `get()` was served, and closes the span: nothing
    /// to do on the fast path, which opened none.
    #[inline]
    fn served(&mut self) {
        if let Some(span) = self.span.take() {
            self.end(span, None);
        }
    }

    /// Writes the error the `get()` ended with, and closes the span.
    fn failed(&mut self, error: Error) -> Error {
        if let Some(span) = self.span.take() {
            self.end(span, Some(&error));
        }
        error
    }

    fn end(&self, span: Span, error: Option<&Error>) {
        if span.is_disabled() {
            return;
        }
        if self.queued {
            span.record("tidewater.queued", true);
        }
        if self.checked {
            span.record("tidewater.checked", true);
        }
        match error {
            None => span.record("tidewater.outcome", "ok"),
            Some(error) => span
                .record("tidewater.outcome", error.kind())
                .record("error.type", error.kind())
                .record("otel.status_code", "ERROR"),
        };
    }
}
