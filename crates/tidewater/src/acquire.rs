//! Taking a connection: the fast path (an idle connection on this thread's
//! shard, no pool lock), joining the queue, waiting, and preparing the
//! connection for the caller.
//!
//! A waiting caller arms no timer of its own: every caller gets the same
//! `acquire_timeout`, so the queue is in deadline order and the pool's
//! maintenance task, sleeping until the front's deadline, times out
//! whoever is late. A caller takes the pool's lock once to join the queue;
//! after that its future only polls its one-shot channel, and takes the
//! lock again only if it is dropped while still queued.

use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use crate::error::Error;
use crate::guard::{Checkout, PooledConnection, Prepared};
use crate::manager::Manager;
use crate::pool::Pool;
use crate::rt::Instant;
use crate::state::{Joined, Served};
use crate::waiters::WaiterKey;

impl<M: Manager> Pool<M> {
    /// The body of `get()` (`wait`) and `try_get()`.
    pub(crate) async fn acquire(
        &self,
        caller: &'static Location<'static>,
        wait: bool,
    ) -> Result<PooledConnection<M>, Error> {
        let start = Instant::now();
        let deadline = start + self.shared.config.acquire_timeout;
        let mut now = start;
        let mut waited = false;
        loop {
            let checkout = match self.take_idle(caller, now) {
                Some(checkout) => checkout,
                None => {
                    let (checkout, queued) = Queue {
                        pool: self,
                        caller,
                        deadline,
                        now,
                        wait,
                        state: QueueState::Joining,
                    }
                    .await?;
                    waited |= queued;
                    checkout
                }
            };
            let mut conn = PooledConnection::new(self.clone(), checkout);
            match conn.prepare(deadline).await {
                Prepared::Ready { checked } if waited || checked => {
                    self.shared.idle.record_wait(start.elapsed());
                    return Ok(conn);
                }
                Prepared::Ready { .. } => {
                    self.shared.idle.count_direct();
                    return Ok(conn);
                }
                Prepared::Discard => now = Instant::now(),
                Prepared::OutOfTime => {
                    let state = self.lock();
                    return Err(self.timeout_error(&state, start.elapsed()));
                }
            }
        }
    }

    /// An idle connection from the shards without the pool's lock, when
    /// nobody waits (who would come first) and the pool is open.
    fn take_idle(
        &self,
        caller: &'static Location<'static>,
        now: Instant,
    ) -> Option<Checkout<M::Connection>> {
        let shared = &*self.shared;
        if shared.gauges.may_take_idle() {
            shared.idle.take(caller, now)
        } else {
            None
        }
    }
}

/// A caller that found no idle connection on the fast path. Its first poll
/// joins the queue under the pool's lock (or takes the idle connection it
/// finds there) and registers its waker with its channel. It resolves when
/// the pool gives it a connection (`true`: it waited in the queue) or an
/// error. Dropped while still queued, it leaves the queue; a connection
/// given to it but not picked up goes on to the next caller.
struct Queue<'a, M: Manager> {
    pool: &'a Pool<M>,
    caller: &'static Location<'static>,
    deadline: Instant,
    now: Instant,
    /// `false` for `try_get`: take an idle connection or fail, never queue.
    wait: bool,
    state: QueueState<M::Connection>,
}

enum QueueState<C> {
    Joining,
    Queued(WaiterKey, oneshot::Receiver<Served<C>>),
    Done,
}

impl<M: Manager> Future for Queue<'_, M> {
    type Output = Result<(Checkout<M::Connection>, bool), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let QueueState::Joining = this.state {
            let (handoff, receiver) = match this.wait {
                true => {
                    let (sender, receiver) = oneshot::channel();
                    (Some(sender), Some(receiver))
                }
                false => (None, None),
            };
            let served = match this
                .pool
                .join(this.caller, this.deadline, this.now, handoff)
            {
                Ok(Joined::Queued(key)) => {
                    let receiver = receiver.expect("only a waiting caller queues");
                    this.state = QueueState::Queued(key, receiver);
                    None
                }
                Ok(Joined::Idle(checkout)) => Some(Ok((checkout, false))),
                Err(error) => Some(Err(error)),
            };
            if let Some(served) = served {
                this.state = QueueState::Done;
                return Poll::Ready(served);
            }
        }
        let QueueState::Queued(_, receiver) = &mut this.state else {
            unreachable!("polled after completion")
        };
        let served = match Pin::new(receiver).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(served) => served.expect("a waiter taken off the queue is given something"),
        };
        this.state = QueueState::Done;
        Poll::Ready(served.map(|checkout| (checkout, true)))
    }
}

impl<M: Manager> Drop for Queue<'_, M> {
    fn drop(&mut self) {
        let QueueState::Queued(key, receiver) = &mut self.state else {
            return;
        };
        let pool = self.pool;
        if pool.with_state(|_, state| state.waiters.remove(*key)) {
            return;
        }
        // Taken off the queue already: whatever it was given (now, or never
        // after this close) goes back.
        receiver.close();
        if let Ok(Ok(checkout)) = receiver.try_recv() {
            pool.put_back(checkout);
        }
    }
}
