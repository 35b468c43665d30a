//! Model check of acquire, release and cancellation with shuttle.
//!
//! Built with `RUSTFLAGS="--cfg tidewater_shuttle"`, the pool's lock is
//! shuttle's mutex and its background tasks (connection openers) are
//! shuttle tasks, so shuttle explores the interleavings of the callers and
//! the openers around every lock and every `.await`. Timers never fire in
//! this mode, so nothing here depends on one: a caller that is never served
//! blocks forever, which shuttle reports as a deadlock.
//!
//! In each schedule a few tasks contend for a pool of one or two
//! connections, handing them on through the waiter queue; some give up a
//! pending `get` at an arbitrary point (dropping the future after polling
//! it a few times, or being aborted), some return their connection broken,
//! so that a new one must be opened for the next waiter. Throughout, no
//! more than `max_size` callers hold a connection at once; once every task
//! is done and the openers have stopped, nothing is in use, the pool is
//! within `max_size`, the connections alive are those the pool counts, the
//! counters balance, and `max_size` more callers all get a connection.
//! Another model closes the pool while such callers run: `close()` sees
//! every connection back, and none is left open.
//!
//! Run with:
//! `RUSTFLAGS="--cfg tidewater_shuttle" cargo test -p tidewater --test model_check --target-dir target/shuttle`

// The doc comment goes first: it must stay when the cfg below empties
// the file (in normal builds), or `missing_docs` fires.
#![cfg(tidewater_shuttle)]

use std::future::{Future, poll_fn};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::task::Poll;
use std::time::Duration;

use shuttle::future::{JoinHandle, block_on, spawn, yield_now};
use tidewater::{CloseReason, Error, Manager, Pool, PoolConfig, PooledConnection};

type Guard = PooledConnection<Tiny>;

const ITERATIONS: usize = 4_000;
const PCT_ITERATIONS: usize = 2_000;
const PCT_DEPTH: usize = 3;

/// What the manager did, shared with its connections.
#[derive(Default)]
struct Counts {
    opened: AtomicU64,
    closed: AtomicU64,
}

impl Counts {
    fn alive(&self) -> u64 {
        self.opened.load(SeqCst) - self.closed.load(SeqCst)
    }
}

struct Conn {
    id: u64,
    broken: bool,
    counts: Arc<Counts>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.counts.closed.fetch_add(1, SeqCst);
    }
}

/// Connects and validates at once, after one scheduling point each (so
/// that other tasks can run while a connection is opened or validated).
struct Tiny {
    counts: Arc<Counts>,
}

impl Manager for Tiny {
    type Connection = Conn;
    type Error = std::io::Error;

    async fn connect(&self) -> Result<Conn, std::io::Error> {
        yield_now().await;
        let id = self.counts.opened.fetch_add(1, SeqCst) + 1;
        Ok(Conn {
            id,
            broken: false,
            counts: self.counts.clone(),
        })
    }

    async fn validate(&self, _conn: &mut Conn) -> Result<(), std::io::Error> {
        yield_now().await;
        Ok(())
    }

    fn is_broken(&self, conn: &mut Conn) -> bool {
        conn.broken
    }
}

/// A pool and what the test knows about it.
struct World {
    pool: Pool<Tiny>,
    counts: Arc<Counts>,
    max_size: u32,
    /// Callers holding a connection right now.
    holders: AtomicU32,
    /// Set before the pool is closed: `get()` may then fail with `Closed`.
    closing: AtomicBool,
}

impl World {
    fn new(max_size: u32, max_connecting: u32, validate_every_checkout: bool) -> Arc<Self> {
        let counts = Arc::new(Counts::default());
        let config = PoolConfig {
            max_size,
            max_connecting,
            min_idle: 0,
            // Validate on every checkout, or (in effect) never: the clock is
            // the real one here, so nothing may depend on its value.
            validate_after: if validate_every_checkout {
                Duration::ZERO
            } else {
                Duration::from_secs(3600)
            },
            idle_timeout: None,
            max_lifetime: None,
            keepalive_interval: None,
            leak_detection_threshold: None,
            ..PoolConfig::default()
        };
        let manager = Tiny {
            counts: counts.clone(),
        };
        let pool = Pool::new(manager, config).expect("a valid configuration");
        Arc::new(Self {
            pool,
            counts,
            max_size,
            holders: AtomicU32::new(0),
            closing: AtomicBool::new(false),
        })
    }

    /// The connection a `get()` returned; none only once the pool closes
    /// (no timer fires, so nothing else makes `get()` give up).
    fn taken(&self, result: Result<Guard, Error>) -> Option<Guard> {
        match result {
            Ok(conn) => Some(conn),
            Err(Error::Closed { .. }) if self.closing.load(SeqCst) => None,
            Err(error) => panic!("get() failed: {error}"),
        }
    }

    /// Takes a connection, holds it across a scheduling point, and gives it
    /// back (broken, if asked).
    async fn use_once(&self, broken: bool) {
        let Some(mut conn) = self.taken(self.pool.get().await) else {
            return;
        };
        // Declared after the guard, so dropped before it, also on abort.
        let _holding = Holding::new(self);
        assert!(conn.id > 0);
        yield_now().await;
        conn.broken = broken;
    }

    /// Starts a `get`, polls it up to `polls` times (yielding in between),
    /// then gives up on it: a connection it got meanwhile goes back.
    async fn give_up_after(&self, polls: usize) {
        let mut get = Box::pin(self.pool.get());
        for _ in 0..polls {
            match poll_fn(|cx| Poll::Ready(get.as_mut().poll(cx))).await {
                Poll::Ready(result) => {
                    drop(self.taken(result));
                    return;
                }
                Poll::Pending => yield_now().await,
            }
        }
        drop(get);
    }

    /// Once every caller is done, lets the openers finish: they stop, a
    /// connection one opened is handed on (the pool takes a waiter off the
    /// queue under its lock and gives it the connection after unlocking,
    /// so for a moment it is neither idle nor held), and a connection one
    /// opened after all (for a pool that closed) is closed. Unlocking the
    /// pool is a scheduling point, so a connection may still be on its way
    /// out just after the pool stopped counting it. A connection really
    /// lost never settles.
    async fn quiesce(&self) {
        let mut rounds = 0;
        loop {
            let status = self.pool.status();
            if status.opening == 0
                && status.in_use == 0
                && self.counts.alive() == u64::from(status.size)
            {
                return;
            }
            rounds += 1;
            assert!(
                rounds < 1_000,
                "never settles: {status}, {} connections alive",
                self.counts.alive()
            );
            yield_now().await;
        }
    }

    /// Once every caller is done: the pool is whole.
    async fn check_whole(&self) {
        self.quiesce().await;
        let status = self.pool.status();
        let stats = self.pool.stats();
        assert_eq!(status.in_use, 0, "connections lost in use: {status}");
        assert_eq!(status.waiters, 0, "{status}");
        assert!(status.size <= self.max_size, "{status}");
        assert_eq!(status.size, status.idle, "{status}");
        assert_eq!(
            self.counts.alive(),
            u64::from(status.size),
            "connections alive vs counted: {status}"
        );
        assert_eq!(stats.opened, self.counts.opened.load(SeqCst));
        assert_eq!(stats.closed_total(), self.counts.closed.load(SeqCst));
        assert_eq!(stats.opened - stats.closed_total(), u64::from(status.size));

        // No capacity lost: max_size callers at once each get a connection
        // (one that never comes would block forever: a deadlock).
        let mut held = Vec::new();
        for _ in 0..self.max_size {
            held.push(self.pool.get().await.expect("a connection"));
        }
        let status = self.pool.status();
        assert_eq!((status.size, status.in_use), (self.max_size, self.max_size));
        let mut ids: Vec<u64> = held.iter().map(|conn| conn.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), held.len(), "one connection handed out twice");
        drop(held);
        let status = self.pool.status();
        assert_eq!((status.in_use, status.idle), (0, self.max_size), "{status}");
        assert_eq!(self.counts.alive(), u64::from(self.max_size));
    }
}

/// Counts one caller holding a connection, while it lives.
struct Holding<'a>(&'a AtomicU32);

impl<'a> Holding<'a> {
    fn new(world: &'a World) -> Self {
        let holders = world.holders.fetch_add(1, SeqCst) + 1;
        assert!(
            holders <= world.max_size,
            "{holders} callers hold a connection, max_size {}",
            world.max_size
        );
        Self(&world.holders)
    }
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

fn spawn_with<F, Fut>(world: &Arc<World>, task: F) -> JoinHandle<()>
where
    F: FnOnce(Arc<World>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    spawn(task(world.clone()))
}

async fn join_all(tasks: Vec<JoinHandle<()>>) {
    for task in tasks {
        task.await.expect("the task finishes");
    }
}

/// Callers take turns on too few connections, handing them on through the
/// waiter queue.
fn contended(max_size: u32, max_connecting: u32, callers: usize) {
    block_on(async move {
        let world = World::new(max_size, max_connecting, false);
        let tasks = (0..callers)
            .map(|_| spawn_with(&world, |w| async move { w.use_once(false).await }))
            .collect();
        join_all(tasks).await;
        let stats = world.pool.stats();
        assert_eq!(stats.acquired(), callers as u64);
        assert!(
            stats.opened <= u64::from(max_size),
            "only as many as needed"
        );
        world.check_whole().await;
    });
}

/// Some callers give up a pending `get` at any point: before it is served,
/// after a connection was handed to it but before it took it, or while
/// its connection is validated. Another is aborted.
fn with_cancellation(max_size: u32, validate_every_checkout: bool) {
    block_on(async move {
        let world = World::new(max_size, 2, validate_every_checkout);
        let mut tasks = vec![
            spawn_with(&world, |w| async move { w.use_once(false).await }),
            spawn_with(&world, |w| async move { w.give_up_after(1).await }),
            spawn_with(&world, |w| async move { w.use_once(false).await }),
            spawn_with(&world, |w| async move { w.give_up_after(3).await }),
        ];
        let aborted = spawn_with(&world, |w| async move { w.use_once(false).await });
        yield_now().await;
        aborted.abort();
        tasks.push(spawn_with(
            &world,
            |w| async move { w.use_once(false).await },
        ));
        join_all(tasks).await;
        // Aborted, or finished before the abort took effect: either way done.
        let _ = aborted.await;
        assert_eq!(world.holders.load(SeqCst), 0);
        let stats = world.pool.stats();
        assert_eq!(
            stats.closed_total(),
            stats.closed_by(CloseReason::Interrupted),
            "only checkouts interrupted while validating are closed"
        );
        if !validate_every_checkout {
            assert_eq!(stats.closed_total(), 0);
        }
        world.check_whole().await;
    });
}

/// Every caller breaks its connection: each is discarded, and the next
/// waiter is served by a connection opened in its place.
fn broken_returns(max_size: u32, callers: usize) {
    block_on(async move {
        let world = World::new(max_size, 1, false);
        let mut tasks: Vec<_> = (0..callers)
            .map(|_| spawn_with(&world, |w| async move { w.use_once(true).await }))
            .collect();
        tasks.push(spawn_with(
            &world,
            |w| async move { w.give_up_after(2).await },
        ));
        join_all(tasks).await;
        let stats = world.pool.stats();
        assert_eq!(stats.closed_by(CloseReason::Broken), callers as u64);
        assert_eq!(stats.closed_total(), callers as u64);
        assert!(stats.opened >= callers as u64);
        world.check_whole().await;
    });
}

/// The pool closes while callers hold connections, wait for one, or give
/// up waiting: every connection is closed as it comes back (or as it is
/// opened, for an attempt under way), `close()` sees them all back, and
/// nothing is left open.
fn closing(max_size: u32) {
    block_on(async move {
        let world = World::new(max_size, 2, false);
        let tasks = vec![
            spawn_with(&world, |w| async move { w.use_once(false).await }),
            spawn_with(&world, |w| async move { w.give_up_after(2).await }),
            spawn_with(&world, |w| async move { w.use_once(false).await }),
            spawn_with(&world, |w| async move { w.give_up_after(1).await }),
        ];
        yield_now().await;
        world.closing.store(true, SeqCst);
        // No timer fires, so close() waits until every connection is back:
        // one that never comes back is a deadlock.
        let report = world.pool.close().await;
        join_all(tasks).await;
        assert_eq!(report.still_in_use, 0);
        world.quiesce().await;
        let status = world.pool.status();
        assert_eq!(status.size, 0, "a closed pool kept connections: {status}");
        assert_eq!(world.counts.alive(), 0, "connections left open");
        let stats = world.pool.stats();
        assert_eq!(stats.closed_total(), stats.opened);
        assert_eq!(stats.closed_by(CloseReason::PoolClosed), stats.opened);
        assert!(matches!(world.pool.get().await, Err(Error::Closed { .. })));
    });
}

#[test]
fn contended_single_connection() {
    shuttle::check_random(|| contended(1, 1, 3), ITERATIONS);
}

#[test]
fn contended_two_connections() {
    shuttle::check_random(|| contended(2, 2, 4), ITERATIONS);
    shuttle::check_pct(|| contended(2, 1, 4), PCT_ITERATIONS, PCT_DEPTH);
}

#[test]
fn cancelled_gets_lose_nothing() {
    shuttle::check_random(|| with_cancellation(1, false), ITERATIONS);
    shuttle::check_random(|| with_cancellation(2, false), ITERATIONS);
    shuttle::check_pct(|| with_cancellation(1, false), PCT_ITERATIONS, PCT_DEPTH);
}

#[test]
fn gets_cancelled_while_validating_lose_nothing() {
    shuttle::check_random(|| with_cancellation(1, true), ITERATIONS);
    shuttle::check_pct(|| with_cancellation(2, true), PCT_ITERATIONS, PCT_DEPTH);
}

#[test]
fn broken_connections_are_replaced() {
    shuttle::check_random(|| broken_returns(1, 3), ITERATIONS);
    shuttle::check_random(|| broken_returns(2, 3), ITERATIONS);
    shuttle::check_pct(|| broken_returns(1, 3), PCT_ITERATIONS, PCT_DEPTH);
}

#[test]
fn closing_loses_nothing() {
    shuttle::check_random(|| closing(1), ITERATIONS);
    shuttle::check_random(|| closing(2), ITERATIONS);
    shuttle::check_pct(|| closing(1), PCT_ITERATIONS, PCT_DEPTH);
}
