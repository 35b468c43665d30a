//! Property tests of random schedules against a pool built on the testkit's
//! `ScriptedManager`, under tokio's paused clock.
//!
//! Each case builds a small pool and runs a random sequence of operations:
//! `get` (the guard kept by the test, or by a task that holds it until it
//! is aborted), `try_get`, dropping a guard, cancelling a pending `get`,
//! panicking while holding a connection, a failed connection attempt,
//! marking a held connection broken or dirty, advancing the clock (past
//! `validate_after`, `acquire_timeout`, idle timeouts and lifetimes),
//! resizing and closing. Most steps let the pool's tasks settle before the
//! next one; some do not, so that steps land between a connection being
//! handed to a waiter and the waiter taking it.
//!
//! Between any two polls of the pool's tasks, the pool never has more
//! connections than `max_size` (beyond connections in use when it shrank,
//! which only drain), and the connections alive are exactly those the pool
//! counts. Once settled: every connection in use has exactly one holder,
//! every pending `get` is in the queue, nobody waits while a connection is
//! idle or while the pool has room and opens nothing, no connection is handed
//! out broken or dirty, and the counters balance (opened minus closed is the
//! size; checkouts, timeouts, broken and panicked closes match what the
//! callers saw). At the end, with every guard dropped and every task
//! aborted, no capacity is lost: `max_size` concurrent callers all get a
//! connection within `acquire_timeout` (or, once closed, nothing is left
//! open).

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Once};
use std::task::Poll;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestCaseError};
use tidewater::PooledConnection;
use tidewater::{
    Backoff, BreakerConfig, CloseReason, CloseReport, Error, ErrorClass, IdleOrder, Pool,
    PoolConfig,
};
use tidewater_testkit::{ConnectStep, Script, ScriptedManager, spawn_get};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

type Guard = PooledConnection<ScriptedManager>;
type Fallible = Result<(), TestCaseError>;

const PANIC_MESSAGE: &str = "intentional panic while holding a connection";

/// Yields that let every task the last step woke run to completion; a
/// checkout chain (queue, spawn an opener, connect, hand over, prepare,
/// report back) takes about six.
const SETTLE_YIELDS: usize = 32;

/// Most connect failures queued at once, so that the final check (every
/// slot filled within `acquire_timeout`) has time for their retries.
const MAX_QUEUED_FAILURES: u64 = 3;

const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(4);

/// Silences the panics the test causes on purpose; others are reported as
/// usual.
fn silence_intended_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&PANIC_MESSAGE) {
                default(info);
            }
        }));
    });
}

#[derive(Clone, Debug)]
struct Setup {
    max_size: u32,
    max_connecting: u32,
    min_idle: u32,
    connect_latency: Duration,
    idle_order: IdleOrder,
    idle_timeout: Option<Duration>,
    max_lifetime: Option<Duration>,
    keepalive_interval: Option<Duration>,
    breaker_failure_threshold: Option<u32>,
}

impl Setup {
    fn config(&self) -> PoolConfig {
        PoolConfig {
            name: "props".to_owned(),
            max_size: self.max_size,
            max_connecting: self.max_connecting,
            min_idle: self.min_idle,
            acquire_timeout: ACQUIRE_TIMEOUT,
            connect_timeout: Duration::from_secs(1),
            validation_timeout: Duration::from_secs(1),
            validate_after: Duration::from_millis(500),
            idle_timeout: self.idle_timeout,
            max_lifetime: self.max_lifetime,
            max_lifetime_jitter: 0.25,
            keepalive_interval: self.keepalive_interval,
            idle_order: self.idle_order,
            connect_backoff: Backoff {
                initial: Duration::from_millis(10),
                max: Duration::from_millis(100),
            },
            breaker: BreakerConfig {
                enabled: self.breaker_failure_threshold.is_some(),
                failure_threshold: self.breaker_failure_threshold.unwrap_or(5),
            },
            maintenance_interval: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(5),
            ..PoolConfig::default()
        }
    }
}

fn setups() -> impl Strategy<Value = Setup> {
    (1u32..=4)
        .prop_flat_map(|max_size| {
            (
                Just(max_size),
                1u32..=3,
                0..=max_size.min(1),
                prop_oneof![
                    3 => Just(Duration::ZERO),
                    1 => Just(Duration::from_millis(20)),
                    1 => Just(Duration::from_millis(300)),
                ],
                prop_oneof![Just(IdleOrder::Lifo), Just(IdleOrder::Fifo)],
                prop::option::of(Just(Duration::from_secs(3))),
                prop::option::of((5u64..60).prop_map(Duration::from_secs)),
                prop::option::of(Just(Duration::from_secs(2))),
                prop::option::of(1u32..=5),
            )
        })
        .prop_map(
            |(
                max_size,
                max_connecting,
                min_idle,
                connect_latency,
                idle_order,
                idle_timeout,
                max_lifetime,
                keepalive_interval,
                breaker_failure_threshold,
            )| Setup {
                max_size,
                max_connecting,
                min_idle,
                connect_latency,
                idle_order,
                idle_timeout,
                max_lifetime,
                keepalive_interval,
                breaker_failure_threshold,
            },
        )
}

#[derive(Clone, Debug)]
enum Op {
    /// A task takes a connection and hands the guard to the test.
    Get,
    /// A task takes a connection and holds it until it is aborted.
    GetHeldByTask,
    /// The test takes an idle connection, if one is ready, without waiting.
    TryGet,
    /// Drops one of the test's guards.
    Drop(usize),
    /// Aborts a task that holds a connection.
    AbortHolder(usize),
    /// Aborts a task whose `get` is still pending.
    Cancel(usize),
    /// A task takes a connection and panics while holding it.
    PanicHolding,
    /// The next connection attempt fails (transient).
    ConnectFail,
    /// Marks one of the test's connections broken.
    Break(usize),
    /// Leaves session state on one of the test's connections.
    Dirty(usize),
    /// Moves the paused clock forward.
    Advance(Duration),
    Resize(u32),
    Close,
}

fn ops() -> impl Strategy<Value = Op> {
    let index = 0usize..8;
    prop_oneof![
        6 => Just(Op::Get),
        2 => Just(Op::GetHeldByTask),
        1 => Just(Op::TryGet),
        5 => index.clone().prop_map(Op::Drop),
        2 => index.clone().prop_map(Op::AbortHolder),
        3 => index.clone().prop_map(Op::Cancel),
        1 => Just(Op::PanicHolding),
        2 => Just(Op::ConnectFail),
        2 => index.clone().prop_map(Op::Break),
        2 => index.prop_map(Op::Dirty),
        4 => prop_oneof![
            (1u64..100).prop_map(Duration::from_millis),
            (400u64..800).prop_map(Duration::from_millis),
            (3_000u64..6_000).prop_map(Duration::from_millis),
            (10u64..70).prop_map(Duration::from_secs),
        ]
        .prop_map(Op::Advance),
        2 => (1u32..=5).prop_map(Op::Resize),
        1 => Just(Op::Close),
    ]
}

/// A step, and whether the pool's tasks settle after it.
fn schedules() -> impl Strategy<Value = Vec<(Op, bool)>> {
    prop::collection::vec((ops(), prop::bool::weighted(0.75)), 1..40)
}

/// What a task that called `get` reports.
enum Outcome {
    Guard(Guard),
    HeldInTask(u64),
    Panicking,
    /// The error, and how long the call took.
    Failed(Error, Duration),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// Hands its guard to the test.
    Driver,
    /// Holds its guard until aborted.
    Holder,
    /// Panics while holding its guard.
    Panicker,
}

struct PendingGet {
    kind: Kind,
    handle: JoinHandle<()>,
    outcome: oneshot::Receiver<Outcome>,
}

struct Holder {
    handle: JoinHandle<()>,
    id: u64,
}

struct Harness {
    pool: Pool<ScriptedManager>,
    script: Arc<Script>,
    setup: Setup,
    /// Guards the test holds.
    held: Vec<Guard>,
    /// Tasks that hold a connection.
    holders: Vec<Holder>,
    /// Tasks whose `get` has not answered yet.
    pending: Vec<PendingGet>,
    /// Aborted gets: one may have finished before the abort took effect,
    /// and what it reported still counts.
    cancelled: Vec<PendingGet>,
    /// Tasks that must end on their own (panickers, aborted holders).
    ending: Vec<JoinHandle<()>>,
    close_task: Option<JoinHandle<CloseReport>>,
    closed: bool,
    /// Most connections the pool may have now: `max_size`, or more while
    /// connections in use when it shrank drain.
    ceiling: u32,
    queued_failures: u64,
    attempts_seen: u64,
    /// What the callers saw, to balance against the pool's counters.
    acquired: u64,
    timeouts: u64,
    unavailable: u64,
    broken_dropped: u64,
    panicked: u64,
}

/// What a get reported, once accounted for.
enum Received {
    Guard(Guard),
    Holder(u64),
    Nothing,
}

/// Polls `future` once, with the caller's waker.
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    poll_fn(|cx| Poll::Ready(Pin::new(&mut *future).poll(cx))).await
}

impl Harness {
    fn new(setup: Setup) -> Self {
        let manager = ScriptedManager::new();
        let script = manager.script();
        script.set_connect_latency(setup.connect_latency);
        let pool = Pool::new(manager, setup.config()).expect("a valid configuration");
        Self {
            pool,
            script,
            ceiling: setup.max_size,
            setup,
            held: Vec::new(),
            holders: Vec::new(),
            pending: Vec::new(),
            cancelled: Vec::new(),
            ending: Vec::new(),
            close_task: None,
            closed: false,
            queued_failures: 0,
            attempts_seen: 0,
            acquired: 0,
            timeouts: 0,
            unavailable: 0,
            broken_dropped: 0,
            panicked: 0,
        }
    }

    fn spawn_get(&mut self, kind: Kind) {
        let pool = self.pool.clone();
        let (tx, rx) = oneshot::channel();
        let handle = tokio::spawn(async move {
            let started = Instant::now();
            let conn = match pool.get().await {
                Ok(conn) => conn,
                Err(error) => {
                    let _ = tx.send(Outcome::Failed(error, started.elapsed()));
                    return;
                }
            };
            match kind {
                Kind::Driver => {
                    let _ = tx.send(Outcome::Guard(conn));
                }
                Kind::Holder => {
                    let _ = tx.send(Outcome::HeldInTask(conn.id()));
                    std::future::pending::<()>().await;
                    drop(conn);
                }
                Kind::Panicker => {
                    let _ = tx.send(Outcome::Panicking);
                    // Held across an await, as real code would.
                    tokio::task::yield_now().await;
                    if conn.id() > 0 {
                        std::panic::panic_any(PANIC_MESSAGE);
                    }
                }
            }
        });
        self.pending.push(PendingGet {
            kind,
            handle,
            outcome: rx,
        });
    }

    /// Lets the pool's tasks run (the clock does not move), checking the
    /// bounds after every round, then takes in what the tasks reported and
    /// checks the settled pool.
    async fn settle(&mut self) -> Fallible {
        loop {
            for _ in 0..SETTLE_YIELDS {
                tokio::task::yield_now().await;
                self.check_bounds()?;
            }
            if !self.collect()? {
                return self.check_settled();
            }
        }
    }

    fn sync_attempts(&mut self) {
        let attempts = self.script.attempts();
        let new = attempts - self.attempts_seen;
        self.queued_failures = self.queued_failures.saturating_sub(new);
        self.attempts_seen = attempts;
    }

    /// Holds between any two polls: the connections alive are the ones the
    /// pool counts, within its ceiling, and the counters balance.
    fn check_bounds(&mut self) -> Fallible {
        self.sync_attempts();
        let status = self.pool.status();
        let alive = self.script.alive();
        prop_assert_eq!(
            alive,
            u64::from(status.size),
            "connections alive vs counted: {}",
            status
        );
        prop_assert!(status.idle <= status.size, "{}", status);
        prop_assert_eq!(status.size, status.in_use + status.idle);
        prop_assert!(
            status.size <= self.ceiling,
            "{} connections open, allowed {}: {}",
            status.size,
            self.ceiling,
            status
        );
        prop_assert!(
            status.size <= status.max_size || status.idle == 0,
            "idle connections kept beyond max_size: {}",
            status
        );
        self.ceiling = status.max_size.max(status.size.min(self.ceiling));
        let stats = self.pool.stats();
        prop_assert_eq!(
            stats.opened - stats.closed_total(),
            u64::from(status.size),
            "opened {} minus closed {} vs size: {}",
            stats.opened,
            stats.closed_total(),
            status
        );
        prop_assert_eq!(stats.opened, self.script.opened());
        prop_assert_eq!(stats.closed_total(), self.script.closed());
        Ok(())
    }

    /// Accounts for what a get reported.
    fn account(&mut self, outcome: Outcome, kind: Kind) -> Result<Received, TestCaseError> {
        match outcome {
            Outcome::Guard(guard) => {
                prop_assert!(!guard.is_broken(), "handed out a broken connection");
                prop_assert!(!guard.is_dirty(), "handed out a connection not reset");
                self.acquired += 1;
                return Ok(Received::Guard(guard));
            }
            Outcome::HeldInTask(id) => {
                self.acquired += 1;
                return Ok(Received::Holder(id));
            }
            Outcome::Panicking => {
                self.acquired += 1;
                self.panicked += 1;
            }
            Outcome::Failed(error, took) => match error {
                Error::Timeout { waited, .. } => {
                    prop_assert_eq!(waited, took, "the wait a timeout reports");
                    prop_assert!(waited >= ACQUIRE_TIMEOUT, "timed out early: {}", error);
                    self.timeouts += 1;
                }
                Error::Unavailable { .. } => {
                    prop_assert!(
                        self.setup.breaker_failure_threshold.is_some(),
                        "breaker disabled, yet: {}",
                        error
                    );
                    self.unavailable += 1;
                }
                Error::Closed { .. } => prop_assert!(self.closed, "{}", error),
                error => {
                    return Err(TestCaseError::fail(format!(
                        "unexpected error from a {kind:?} get: {error}"
                    )));
                }
            },
        }
        Ok(Received::Nothing)
    }

    /// Takes in what the tasks reported; `true` when that gave a
    /// connection back (so the pool's tasks must settle again).
    fn collect(&mut self) -> Result<bool, TestCaseError> {
        let mut gave_back = false;
        for mut get in std::mem::take(&mut self.pending) {
            match get.outcome.try_recv() {
                Ok(outcome) => match self.account(outcome, get.kind)? {
                    Received::Guard(guard) => self.held.push(guard),
                    Received::Holder(id) => self.holders.push(Holder {
                        handle: get.handle,
                        id,
                    }),
                    Received::Nothing => self.ending.push(get.handle),
                },
                Err(oneshot::error::TryRecvError::Empty) => {
                    prop_assert!(
                        !get.handle.is_finished(),
                        "a {:?} get task ended without a word",
                        get.kind
                    );
                    self.pending.push(get);
                }
                Err(oneshot::error::TryRecvError::Closed) => {
                    return Err(TestCaseError::fail(format!(
                        "a {:?} get task ended without a word",
                        get.kind
                    )));
                }
            }
        }
        for mut get in std::mem::take(&mut self.cancelled) {
            match get.outcome.try_recv() {
                // Served before the abort took effect: a guard handed over
                // is dropped here; one a task held went with the task.
                Ok(outcome) => {
                    let received = self.account(outcome, get.kind)?;
                    gave_back |= matches!(received, Received::Guard(_));
                }
                Err(oneshot::error::TryRecvError::Empty) => self.cancelled.push(get),
                Err(oneshot::error::TryRecvError::Closed) => {}
            }
        }
        Ok(gave_back)
    }

    /// What holds once the pool's tasks have settled.
    fn check_settled(&mut self) -> Fallible {
        let status = self.pool.status();
        let holders = (self.held.len() + self.holders.len()) as u32;
        prop_assert_eq!(
            status.in_use,
            holders,
            "connections in use vs holders: {}",
            status
        );
        prop_assert_eq!(
            status.waiters as usize,
            self.pending.len(),
            "callers queued vs gets pending: {}",
            status
        );
        prop_assert!(
            status.waiters == 0 || status.idle == 0,
            "callers wait while a connection is idle: {}",
            status
        );
        prop_assert!(
            status.waiters == 0
                || self.closed
                || status.breaker_open
                || status.size >= status.max_size
                || status.opening > 0,
            "callers wait, there is room, and nothing opens: {}",
            status
        );
        let mut ids: Vec<u64> = self.held.iter().map(|guard| guard.id()).collect();
        ids.extend(self.holders.iter().map(|holder| holder.id));
        ids.sort_unstable();
        let before = ids.len();
        ids.dedup();
        prop_assert_eq!(ids.len(), before, "one connection checked out twice");
        prop_assert!(self.cancelled.is_empty(), "an aborted get task still runs");
        for task in &self.ending {
            prop_assert!(task.is_finished(), "a panicking or aborted task still runs");
        }
        self.ending.clear();

        let stats = self.pool.stats();
        prop_assert_eq!(stats.acquired(), self.acquired, "checkouts counted vs seen");
        prop_assert_eq!(stats.timeouts, self.timeouts, "timeouts counted vs seen");
        prop_assert_eq!(stats.rejected_unavailable, self.unavailable);
        prop_assert_eq!(stats.rejected_queue_full, 0);
        prop_assert_eq!(stats.closed_by(CloseReason::Broken), self.broken_dropped);
        prop_assert_eq!(stats.closed_by(CloseReason::Panicked), self.panicked);
        // An attempt of a manager without latency ends within the poll
        // that starts it; otherwise some may be under way.
        let finished_failures = self.script.attempts() - self.script.opened();
        if self.setup.connect_latency.is_zero() {
            prop_assert_eq!(stats.connect_errors_transient, finished_failures);
        } else {
            prop_assert!(stats.connect_errors_transient <= finished_failures);
        }
        Ok(())
    }

    fn guard_index(&self, i: usize) -> Option<usize> {
        (!self.held.is_empty()).then(|| i % self.held.len())
    }

    async fn apply(&mut self, op: &Op) -> Fallible {
        match *op {
            Op::Get => self.spawn_get(Kind::Driver),
            Op::GetHeldByTask => self.spawn_get(Kind::Holder),
            Op::PanicHolding => self.spawn_get(Kind::Panicker),
            Op::TryGet => {
                let idle = self.pool.status().idle;
                let mut attempt = Box::pin(self.pool.try_get());
                let Poll::Ready(result) = poll_once(&mut attempt).await else {
                    return Err(TestCaseError::fail("try_get waited"));
                };
                drop(attempt);
                match result {
                    Ok(guard) => {
                        prop_assert!(!guard.is_broken() && !guard.is_dirty());
                        self.acquired += 1;
                        self.held.push(guard);
                    }
                    Err(Error::NoIdleConnection { .. }) => prop_assert!(
                        idle == 0 || self.setup.max_lifetime.is_some(),
                        "try_get found nothing though {} connections were idle",
                        idle
                    ),
                    Err(Error::Closed { .. }) => prop_assert!(self.closed),
                    Err(error) => {
                        return Err(TestCaseError::fail(format!("try_get: {error}")));
                    }
                }
            }
            Op::Drop(i) => {
                if let Some(i) = self.guard_index(i) {
                    let guard = self.held.swap_remove(i);
                    self.broken_dropped += u64::from(guard.is_broken());
                }
            }
            Op::Break(i) => {
                if let Some(i) = self.guard_index(i) {
                    self.held[i].set_broken();
                }
            }
            Op::Dirty(i) => {
                if let Some(i) = self.guard_index(i) {
                    self.held[i].set_dirty();
                }
            }
            Op::AbortHolder(i) => {
                if !self.holders.is_empty() {
                    let holder = self.holders.swap_remove(i % self.holders.len());
                    holder.handle.abort();
                    self.ending.push(holder.handle);
                }
            }
            Op::Cancel(i) => {
                let cancellable: Vec<usize> = (0..self.pending.len())
                    .filter(|&j| self.pending[j].kind != Kind::Panicker)
                    .collect();
                if !cancellable.is_empty() {
                    let get = self.pending.remove(cancellable[i % cancellable.len()]);
                    get.handle.abort();
                    self.cancelled.push(get);
                }
            }
            Op::ConnectFail => {
                self.sync_attempts();
                if self.queued_failures < MAX_QUEUED_FAILURES {
                    self.script
                        .push_connect(ConnectStep::Fail(ErrorClass::Transient));
                    self.queued_failures += 1;
                }
            }
            Op::Advance(by) => tokio::time::advance(by).await,
            Op::Resize(max_size) => {
                // Any size in range, below min_idle too (the pool keeps
                // as many idle as the size allows).
                let allowed = (1..=10_000).contains(&max_size);
                let result = self.pool.resize(max_size);
                prop_assert_eq!(
                    result.is_ok(),
                    allowed,
                    "resize to {}: {:?}",
                    max_size,
                    result
                );
                let status = self.pool.status();
                if allowed {
                    prop_assert_eq!(status.max_size, max_size);
                    self.ceiling = max_size.max(status.size);
                }
            }
            Op::Close => {
                if !self.closed {
                    self.closed = true;
                    let pool = self.pool.clone();
                    // Its first poll closes the pool at once; the rest (the
                    // drain) runs as a task.
                    let mut close = Box::pin(async move { pool.close().await });
                    match poll_once(&mut close).await {
                        Poll::Ready(report) => prop_assert_eq!(report.still_in_use, 0),
                        Poll::Pending => self.close_task = Some(tokio::spawn(close)),
                    }
                    let status = self.pool.status();
                    prop_assert_eq!(status.idle, 0, "idle connections left open: {}", status);
                }
            }
        }
        self.check_bounds()
    }

    /// Drops every guard and aborts every task, then checks that nothing
    /// was lost.
    async fn finish(mut self) -> Fallible {
        self.settle().await?;
        for guard in std::mem::take(&mut self.held) {
            self.broken_dropped += u64::from(guard.is_broken());
        }
        for holder in std::mem::take(&mut self.holders) {
            holder.handle.abort();
            self.ending.push(holder.handle);
        }
        for get in std::mem::take(&mut self.pending) {
            get.handle.abort();
            self.cancelled.push(get);
        }
        self.settle().await?;
        let status = self.pool.status();
        prop_assert_eq!(status.in_use, 0, "connections lost in use: {}", status);
        prop_assert_eq!(status.waiters, 0);

        if self.closed {
            if let Some(close) = self.close_task.take() {
                close.await.expect("close() ends");
            }
            let status = self.pool.status();
            prop_assert_eq!(status.size, 0, "a closed pool kept connections: {}", status);
            prop_assert_eq!(self.script.alive(), 0);
            let result = self.pool.get().await;
            prop_assert!(
                matches!(result, Err(Error::Closed { .. })),
                "get() on a closed pool: {:?}",
                result.map(|conn| conn.id())
            );
            return Ok(());
        }

        // A breaker that opened closes by itself once the scripted failures
        // are spent: its probe runs at least every maintenance round.
        for _ in 0..100 {
            let status = self.pool.status();
            if !status.breaker_open || status.size >= status.max_size {
                break;
            }
            tokio::time::advance(Duration::from_millis(200)).await;
            self.settle().await?;
        }
        let status = self.pool.status();
        prop_assert!(
            !status.breaker_open || status.size >= status.max_size,
            "the breaker stays open: {}",
            status
        );

        // No capacity lost: max_size callers at once all get a connection
        // within acquire_timeout (the clock runs by itself from here).
        // While scripted failures are left, a caller may rightly fail (the
        // breaker fails those waiting when an attempt fails); each such
        // failure spends one, and the caller tries again.
        let max_size = status.max_size;
        for _ in 0..max_size {
            self.spawn_get(Kind::Driver);
        }
        while !self.pending.is_empty() {
            self.sync_attempts();
            let failures_left = self.queued_failures;
            for mut get in std::mem::take(&mut self.pending) {
                let outcome = (&mut get.outcome).await.expect("a get task reports");
                match self.account(outcome, Kind::Driver)? {
                    Received::Guard(guard) => self.held.push(guard),
                    _ if failures_left > 0 => self.spawn_get(Kind::Driver),
                    _ => {
                        return Err(TestCaseError::fail(format!(
                            "capacity lost: a get failed ({})",
                            self.pool.status()
                        )));
                    }
                }
            }
        }
        let status = self.pool.status();
        prop_assert_eq!(status.in_use, max_size, "{}", status);
        prop_assert_eq!(status.size, max_size, "{}", status);
        self.settle().await?;
        self.held.clear();
        self.settle().await?;
        let status = self.pool.status();
        prop_assert_eq!(status.in_use, 0, "{}", status);
        prop_assert_eq!(status.idle, status.size, "{}", status);
        Ok(())
    }
}

fn run_case(setup: Setup, schedule: Vec<(Op, bool)>) -> Fallible {
    silence_intended_panics();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let mut harness = Harness::new(setup);
        harness.settle().await?;
        for (op, settle) in &schedule {
            harness.apply(op).await?;
            if *settle {
                harness.settle().await?;
            }
        }
        harness.finish().await
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        // A failing case's seed is written next to this file
        // (properties.proptest-regressions, checked in) and replayed first
        // on every later run, so a failure found once is never lost.
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel(
            "proptest-regressions"
        ))),
        // A failing case shrinks for at most this long (milliseconds).
        max_shrink_time: 60_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_schedules_keep_the_pool_whole(setup in setups(), schedule in schedules()) {
        run_case(setup, schedule)?;
    }
}

// Deterministic reproductions of what the properties above found. A
// connection handed to a waiter that has not run yet goes back to the idle
// list when that waiter gives up (`Waiting`'s drop calls `put_back`),
// without the checks a returned guard gets: a pool closed or shrunk in the
// meantime keeps it idle. Ignored until the pool is fixed.

/// A pool of `max_size` connections, all held, with one more caller
/// queued; then one connection comes back and is handed to that caller,
/// whose task has not run yet.
async fn served_waiter_not_yet_run(
    max_size: u32,
) -> (
    Pool<ScriptedManager>,
    Arc<Script>,
    Vec<Guard>,
    JoinHandle<Result<u64, Error>>,
) {
    let manager = ScriptedManager::new();
    let script = manager.script();
    let config = PoolConfig {
        max_size,
        ..PoolConfig::default()
    };
    let pool = Pool::new(manager, config).expect("a valid configuration");
    let mut held = Vec::new();
    for _ in 0..max_size {
        held.push(pool.get().await.expect("a connection"));
    }
    let waiter = spawn_get(&pool);
    tidewater_testkit::settle().await;
    assert_eq!(pool.status().waiters, 1);
    held.pop();
    assert_eq!(pool.status().waiters, 0, "handed to the waiter");
    (pool, script, held, waiter)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_connection_handed_to_a_cancelled_waiter_is_closed_with_the_pool() {
    let (pool, script, held, waiter) = served_waiter_not_yet_run(1).await;
    assert!(held.is_empty());
    let mut close = Box::pin(pool.close());
    assert!(
        poll_once(&mut close).await.is_pending(),
        "one connection is out"
    );
    waiter.abort();
    tidewater_testkit::settle().await;
    let report = close.await;
    assert_eq!(report.still_in_use, 0, "{report:?}");
    assert_eq!(pool.status().size, 0, "{}", pool.status());
    assert_eq!(script.alive(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_connection_handed_to_a_cancelled_waiter_is_closed_after_a_shrink() {
    let (pool, script, held, waiter) = served_waiter_not_yet_run(2).await;
    pool.resize(1).expect("a valid size");
    waiter.abort();
    tidewater_testkit::settle().await;
    let status = pool.status();
    assert_eq!((status.size, status.idle), (1, 0), "{status}");
    assert_eq!(pool.stats().closed_by(CloseReason::Resized), 1);
    drop(held);
    let status = pool.status();
    assert_eq!((status.size, status.idle), (1, 1), "{status}");
    assert_eq!(script.alive(), 1);
}
