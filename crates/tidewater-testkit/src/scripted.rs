//! The scripted [`Manager`]: a backend whose every move a test controls.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidewater::{ErrorClass, Manager, Pool, PoolConfig};
use tokio::task::JoinHandle;

use crate::lock;

/// What one connection attempt does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectStep {
    /// Connects after the script's connect latency.
    Succeed,
    /// Connects, but the connection is broken before its first use (a
    /// server, proxy or pooler that accepts a session and drops it).
    SucceedBroken,
    /// Fails with an error of this class after the connect latency.
    Fail(ErrorClass),
    /// Never completes: a database that accepts and never answers.
    Hang,
}

/// What one validation (or reset) does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckStep {
    /// Succeeds after the script's latency.
    Pass,
    /// Fails after the script's latency.
    Fail,
    /// Never completes.
    Hang,
}

/// The error a scripted operation fails with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptedError {
    /// What the error says.
    pub message: String,
    /// How the manager classifies it.
    pub class: ErrorClass,
}

impl fmt::Display for ScriptedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ScriptedError {}

/// A [`Manager`] driven by a [`Script`].
#[derive(Clone, Default)]
pub struct ScriptedManager {
    script: Arc<Script>,
}

impl ScriptedManager {
    /// A manager whose connections open at once and always work.
    pub fn new() -> Self {
        Self::default()
    }

    /// The script, to steer and inspect the manager after the pool owns it.
    pub fn script(&self) -> Arc<Script> {
        self.script.clone()
    }
}

/// The controls and counters shared by a [`ScriptedManager`] and its
/// connections.
#[derive(Default)]
pub struct Script {
    connect_latency: Mutex<Duration>,
    check_latency: Mutex<Duration>,
    connect_steps: Mutex<VecDeque<ConnectStep>>,
    validate_steps: Mutex<VecDeque<CheckStep>>,
    reset_steps: Mutex<VecDeque<CheckStep>>,
    down: Mutex<Option<ErrorClass>>,
    arrive_broken: AtomicBool,
    attempts: AtomicU64,
    connecting: AtomicU64,
    peak_connecting: AtomicU64,
    opened: AtomicU64,
    closed: AtomicU64,
    validations: AtomicU64,
    resets: AtomicU64,
}

impl Script {
    /// Every connection attempt takes this long.
    pub fn set_connect_latency(&self, latency: Duration) {
        *lock(&self.connect_latency) = latency;
    }

    /// Every validation and reset takes this long.
    pub fn set_check_latency(&self, latency: Duration) {
        *lock(&self.check_latency) = latency;
    }

    /// Queues the outcome of a future connection attempt (in order; once
    /// the queue is empty, attempts follow [`set_down`](Script::set_down)).
    pub fn push_connect(&self, step: ConnectStep) {
        lock(&self.connect_steps).push_back(step);
    }

    /// Queues the outcome of a future validation.
    pub fn push_validate(&self, step: CheckStep) {
        lock(&self.validate_steps).push_back(step);
    }

    /// Queues the outcome of a future reset.
    pub fn push_reset(&self, step: CheckStep) {
        lock(&self.reset_steps).push_back(step);
    }

    /// `Some(class)`: the database is down and every unscripted attempt
    /// fails with that class. `None`: it is up.
    pub fn set_down(&self, down: Option<ErrorClass>) {
        *lock(&self.down) = down;
    }

    /// `true`: every unscripted attempt that connects gives a connection
    /// that is already broken ([`ConnectStep::SucceedBroken`]).
    pub fn set_arrive_broken(&self, broken: bool) {
        self.arrive_broken.store(broken, SeqCst);
    }

    /// Connection attempts started.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(SeqCst)
    }

    /// The most connection attempts that were in flight at once since the
    /// script was made or [`reset_peak_connecting`](Script::reset_peak_connecting)
    /// was called.
    pub fn peak_connecting(&self) -> u64 {
        self.peak_connecting.load(SeqCst)
    }

    /// Starts measuring [`peak_connecting`](Script::peak_connecting) afresh.
    pub fn reset_peak_connecting(&self) {
        self.peak_connecting
            .store(self.connecting.load(SeqCst), SeqCst);
    }

    /// Connections opened.
    pub fn opened(&self) -> u64 {
        self.opened.load(SeqCst)
    }

    /// Connections dropped (closed).
    pub fn closed(&self) -> u64 {
        self.closed.load(SeqCst)
    }

    /// Connections that exist now: opened and not yet dropped.
    pub fn alive(&self) -> u64 {
        self.opened() - self.closed()
    }

    /// Validations started.
    pub fn validations(&self) -> u64 {
        self.validations.load(SeqCst)
    }

    /// Resets started.
    pub fn resets(&self) -> u64 {
        self.resets.load(SeqCst)
    }

    fn next_connect(&self) -> ConnectStep {
        let scripted = lock(&self.connect_steps).pop_front();
        scripted.unwrap_or_else(|| match *lock(&self.down) {
            Some(class) => ConnectStep::Fail(class),
            None if self.arrive_broken.load(SeqCst) => ConnectStep::SucceedBroken,
            None => ConnectStep::Succeed,
        })
    }

    async fn check(
        &self,
        steps: &Mutex<VecDeque<CheckStep>>,
        conn: &ScriptedConnection,
    ) -> Result<(), ScriptedError> {
        let step = lock(steps).pop_front().unwrap_or(CheckStep::Pass);
        let latency = *lock(&self.check_latency);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match step {
            CheckStep::Hang => std::future::pending().await,
            CheckStep::Fail => Err(error("scripted check failure", ErrorClass::Transient)),
            CheckStep::Pass if conn.is_broken() => {
                Err(error("connection is broken", ErrorClass::Transient))
            }
            CheckStep::Pass => Ok(()),
        }
    }
}

/// Counts a connection attempt as in flight until dropped (also when the
/// attempt is cancelled).
struct InFlight<'a>(&'a Script);

impl<'a> InFlight<'a> {
    fn enter(script: &'a Script) -> Self {
        let now = script.connecting.fetch_add(1, SeqCst) + 1;
        script.peak_connecting.fetch_max(now, SeqCst);
        Self(script)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.connecting.fetch_sub(1, SeqCst);
    }
}

/// A pool over a fresh [`ScriptedManager`], and the script that steers it.
///
/// # Panics
/// When `config` is invalid: tests pass valid ones.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let (pool, script) = tidewater_testkit::scripted_pool(Default::default());
/// drop(pool.get().await.unwrap());
/// assert_eq!(script.opened(), 1);
/// # }
/// ```
pub fn scripted_pool(config: PoolConfig) -> (Pool<ScriptedManager>, Arc<Script>) {
    let manager = ScriptedManager::new();
    let script = manager.script();
    (
        Pool::new(manager, config).expect("a valid test configuration"),
        script,
    )
}

/// Starts a `get()` in a task of its own. The task gives the connection
/// back at once and ends with its id, or with the error.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let (pool, _) = tidewater_testkit::scripted_pool(Default::default());
/// let caller = tidewater_testkit::spawn_get(&pool);
/// assert_eq!(caller.await.unwrap().unwrap(), 1);
/// # }
/// ```
pub fn spawn_get(pool: &Pool<ScriptedManager>) -> JoinHandle<Result<u64, tidewater::Error>> {
    let pool = pool.clone();
    tokio::spawn(async move { pool.get().await.map(|conn| conn.id()) })
}

/// Lets every task that is ready run, without moving tokio's clock: call it
/// after an action whose effects run in the pool's background tasks.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let (tx, rx) = tokio::sync::oneshot::channel();
/// tokio::spawn(async move { tx.send(1).unwrap() });
/// tidewater_testkit::settle().await;
/// assert_eq!(rx.await.unwrap(), 1);
/// # }
/// ```
pub async fn settle() {
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
}

fn error(message: &str, class: ErrorClass) -> ScriptedError {
    ScriptedError {
        message: message.to_owned(),
        class,
    }
}

/// A connection from a [`ScriptedManager`]: an id, a broken flag and a
/// dirty-session flag.
pub struct ScriptedConnection {
    id: u64,
    broken: AtomicBool,
    dirty: AtomicBool,
    script: Arc<Script>,
}

impl ScriptedConnection {
    /// The order in which it was opened, from 1.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Marks it broken, as a dead socket would.
    pub fn set_broken(&self) {
        self.broken.store(true, SeqCst);
    }

    /// Whether it is broken.
    pub fn is_broken(&self) -> bool {
        self.broken.load(SeqCst)
    }

    /// Leaves session state behind (an open transaction, say).
    pub fn set_dirty(&self) {
        self.dirty.store(true, SeqCst);
    }

    /// Whether it carries session state.
    pub fn is_dirty(&self) -> bool {
        self.dirty.load(SeqCst)
    }
}

impl fmt::Debug for ScriptedConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptedConnection")
            .field("id", &self.id)
            .field("broken", &self.is_broken())
            .finish()
    }
}

impl Drop for ScriptedConnection {
    fn drop(&mut self) {
        self.script.closed.fetch_add(1, SeqCst);
    }
}

impl Manager for ScriptedManager {
    type Connection = ScriptedConnection;
    type Error = ScriptedError;

    async fn connect(&self) -> Result<ScriptedConnection, ScriptedError> {
        let script = &self.script;
        script.attempts.fetch_add(1, SeqCst);
        let _in_flight = InFlight::enter(script);
        let step = script.next_connect();
        let latency = *lock(&script.connect_latency);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match step {
            ConnectStep::Hang => std::future::pending().await,
            ConnectStep::Fail(ErrorClass::Transient) => {
                Err(error("connection refused", ErrorClass::Transient))
            }
            ConnectStep::Fail(ErrorClass::Full) => {
                Err(error("sorry, too many clients already", ErrorClass::Full))
            }
            ConnectStep::Fail(ErrorClass::Permanent) => Err(error(
                "password authentication failed",
                ErrorClass::Permanent,
            )),
            ConnectStep::Succeed | ConnectStep::SucceedBroken => {
                let id = script.opened.fetch_add(1, SeqCst) + 1;
                Ok(ScriptedConnection {
                    id,
                    broken: AtomicBool::new(step == ConnectStep::SucceedBroken),
                    dirty: AtomicBool::new(false),
                    script: script.clone(),
                })
            }
        }
    }

    async fn validate(&self, conn: &mut ScriptedConnection) -> Result<(), ScriptedError> {
        self.script.validations.fetch_add(1, SeqCst);
        self.script.check(&self.script.validate_steps, conn).await
    }

    fn is_broken(&self, conn: &mut ScriptedConnection) -> bool {
        conn.is_broken()
    }

    fn needs_reset(&self, conn: &mut ScriptedConnection) -> bool {
        conn.is_dirty()
    }

    async fn reset(&self, conn: &mut ScriptedConnection) -> Result<(), ScriptedError> {
        self.script.resets.fetch_add(1, SeqCst);
        self.script.check(&self.script.reset_steps, conn).await?;
        conn.dirty.store(false, SeqCst);
        Ok(())
    }

    fn classify(&self, error: &ScriptedError) -> ErrorClass {
        error.class
    }
}
