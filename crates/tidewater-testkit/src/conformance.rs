//! One test suite every backend passes.
//!
//! A backend describes itself once by implementing [`Target`] (how to get
//! a fresh database, how to run a statement, how to break a connection...),
//! then gets every check with one line in a test file:
//!
//! ```ignore
//! tidewater_testkit::conformance!(MyTarget::new().await);
//! ```
//!
//! The checks: a connection opens and validates; a reset clears session
//! state and a transaction left open; a broken connection is detected and
//! replaced; a permanent error fails fast and a transient one is retried;
//! the transaction helper commits, rolls back on error and on panic, and
//! retries a conflict; 200 tasks share a pool of 10 and every slot is back
//! at the end.
//!
//! Every check creates `items (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)`
//! in its own fresh database, so checks run in parallel.
//!
//! What targets on the same server share lives here too: [`pg`] (a private
//! cluster, fresh databases, failing URLs) and [`mariadb`] (the same on the
//! shared MariaDB); a target keeps only what is its driver's.

use std::error::Error as StdError;
use std::future::Future;
use std::time::Duration;

use tidewater::{Error, ErrorClass, Manager, Pool, PoolConfig, PooledConnection};
use tokio::time::Instant;

pub mod mariadb;
pub mod pg;
mod refusing;

/// A boxed error, for what a target's statements return.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// A connection from a target's pool.
pub type Conn<T> = PooledConnection<<T as Target>::Manager>;

/// How a transaction run by [`Target::insert_in_transaction`] ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The body returns `Ok`: the helper commits.
    Commit,
    /// The body returns an error: the helper rolls back.
    Fail,
    /// The body panics: the transaction must roll back all the same.
    Panic,
}

/// SQL that leaves session state behind, and a query that reads it.
#[derive(Clone, Copy, Debug)]
pub struct SessionProbe {
    /// Changes something about the session (a setting, a variable, a
    /// temporary table...).
    pub set: &'static str,
    /// Returns one integer describing that state.
    pub probe: &'static str,
    /// What `probe` returns on a fresh or reset session.
    pub clean: i64,
}

/// What the conformance suite needs from a backend.
pub trait Target: Send + Sync + 'static {
    /// The backend's manager.
    type Manager: Manager;

    /// A manager on an empty database of its own (dropped, or left to be
    /// dropped, when the target goes), configured to reset session state
    /// fully on reuse.
    fn fresh(&self) -> impl Future<Output = Self::Manager> + Send;

    /// A manager whose every connection attempt fails with an error the
    /// backend classifies as permanent (bad password, unknown database,
    /// missing file...).
    fn permanently_failing(&self) -> impl Future<Output = Self::Manager> + Send;

    /// A manager whose connection attempts fail with a transient error until
    /// [`heal`](Target::heal) is called with the same token.
    fn transiently_failing(&self) -> impl Future<Output = (Self::Manager, u64)> + Send;

    /// Ends the transient failure of [`transiently_failing`](Target::transiently_failing).
    fn heal(&self, token: u64) -> impl Future<Output = ()> + Send;

    /// Runs a statement.
    fn execute(
        conn: &mut Conn<Self>,
        sql: &str,
    ) -> impl Future<Output = Result<(), BoxError>> + Send
    where
        Self: Sized;

    /// Runs a query that returns one integer.
    fn query_i64(
        conn: &mut Conn<Self>,
        sql: &str,
    ) -> impl Future<Output = Result<i64, BoxError>> + Send
    where
        Self: Sized;

    /// Session state a reset must clear.
    fn session_probe(&self) -> SessionProbe;

    /// Breaks a checked-out connection the way a server that dropped it
    /// would (killed on the server, socket closed...).
    fn break_connection(&self, conn: &mut Conn<Self>) -> impl Future<Output = ()> + Send
    where
        Self: Sized;

    /// Through the backend's transaction helper: inserts `(id, 1)` into
    /// `items`, then ends as `ending` says. Returns the helper's result.
    fn insert_in_transaction(
        &self,
        pool: &Pool<Self::Manager>,
        id: i64,
        ending: Ending,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Through the backend's transaction helper, makes a transaction meet a
    /// conflict the helper retries (serialization failure, deadlock, lock
    /// timeout, busy database): it must end adding 1 to `n` of row `id`
    /// exactly once. Returns how many attempts it took (at least 2).
    fn conflicting_increment(
        &self,
        pool: &Pool<Self::Manager>,
        id: i64,
    ) -> impl Future<Output = Result<u32, BoxError>> + Send;
}

const CREATE: &str = "CREATE TABLE items (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)";

fn config(max_size: u32) -> PoolConfig {
    PoolConfig {
        max_size,
        acquire_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        validation_timeout: Duration::from_secs(5),
        ..PoolConfig::default()
    }
}

/// A pool on a fresh database holding an empty `items` table.
async fn fresh_pool<T: Target>(target: &T, max_size: u32) -> Pool<T::Manager> {
    let pool = Pool::new(target.fresh().await, config(max_size)).expect("a valid configuration");
    let mut conn = pool.get().await.expect("the fresh database opens");
    T::execute(&mut conn, CREATE)
        .await
        .expect("items is created");
    drop(conn);
    pool
}

async fn count<T: Target>(pool: &Pool<T::Manager>, sql: &str) -> i64 {
    let mut conn = pool.get().await.expect("a connection");
    T::query_i64(&mut conn, sql).await.expect("the count runs")
}

/// A connection opens, runs a query, validates, and comes back for reuse.
pub async fn opens_and_validates<T: Target>(target: &T) {
    let pool = fresh_pool(target, 2).await;
    let mut conn = pool.get().await.unwrap();
    assert_eq!(T::query_i64(&mut conn, "SELECT 1").await.unwrap(), 1);
    let id = conn.id();
    drop(conn);
    assert_eq!(pool.get().await.unwrap().id(), id, "reused, not reopened");

    let manager = target.fresh().await;
    let mut raw = manager.connect().await.expect("connect");
    manager
        .validate(&mut raw)
        .await
        .expect("a new connection validates");
    assert!(!manager.is_broken(&mut raw));
}

/// A transaction left open and session state left behind are gone before
/// the next checkout.
pub async fn reset_clears_session_state_and_open_transactions<T: Target>(target: &T) {
    let pool = fresh_pool(target, 1).await;
    let probe = target.session_probe();
    let mut conn = pool.get().await.unwrap();
    assert_eq!(
        T::query_i64(&mut conn, probe.probe).await.unwrap(),
        probe.clean,
        "a fresh session is clean"
    );
    T::execute(&mut conn, probe.set).await.unwrap();
    assert_ne!(
        T::query_i64(&mut conn, probe.probe).await.unwrap(),
        probe.clean,
        "the probe sees the change"
    );
    T::execute(&mut conn, "BEGIN").await.unwrap();
    T::execute(&mut conn, "INSERT INTO items VALUES (1, 1)")
        .await
        .unwrap();
    drop(conn); // neither committed nor cleaned up

    let mut conn = pool.get().await.unwrap();
    assert_eq!(
        T::query_i64(&mut conn, probe.probe).await.unwrap(),
        probe.clean,
        "session state reset"
    );
    assert_eq!(
        T::query_i64(&mut conn, "SELECT COUNT(*) FROM items")
            .await
            .unwrap(),
        0,
        "rolled back"
    );
    drop(conn);
    assert_eq!(pool.stats().opened, 1, "reset, not replaced");
}

/// A connection the server dropped is found out and replaced.
pub async fn broken_connection_is_replaced<T: Target>(target: &T) {
    let pool = fresh_pool(target, 1).await;
    let mut conn = pool.get().await.unwrap();
    let id = conn.id();
    target.break_connection(&mut conn).await;
    let _ = T::query_i64(&mut conn, "SELECT 1").await; // fails, or notices
    drop(conn);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut conn = pool.get().await.unwrap();
        if conn.id() != id && T::query_i64(&mut conn, "SELECT 1").await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the broken connection was not replaced: {}",
            pool.status()
        );
    }
    assert!(pool.stats().closed_total() >= 1);
}

/// A permanent connection error reaches the caller at once.
pub async fn permanent_error_fails_fast<T: Target>(target: &T) {
    let pool = Pool::new(target.permanently_failing().await, config(2)).unwrap();
    let start = Instant::now();
    let error = pool.get().await.expect_err("cannot connect");
    assert!(
        start.elapsed() < config(2).acquire_timeout,
        "failed fast, not at the timeout: {error}"
    );
    let Error::Connect(cause) = &error else {
        panic!("not a connect error: {error:?}")
    };
    assert_eq!(cause.class(), ErrorClass::Permanent, "{error}");
    assert!(pool.stats().connect_errors_permanent >= 1);
}

/// A transient connection error is retried until it clears.
pub async fn transient_error_is_retried<T: Target>(target: &T) {
    let (manager, token) = target.transiently_failing().await;
    let pool = Pool::new(manager, config(2)).unwrap();
    let waiting = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.map(|conn| conn.id()) }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.stats().connect_errors_transient == 0 {
        assert!(
            Instant::now() < deadline,
            "no attempt failed: {}",
            pool.status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !waiting.is_finished(),
        "the caller keeps waiting while attempts fail"
    );
    target.heal(token).await;
    waiting
        .await
        .unwrap()
        .expect("served once the failure cleared");
}

/// The transaction helper commits, and rolls back on error and on panic.
pub async fn transaction_helper_commits_and_rolls_back<T: Target>(target: &T) {
    let pool = fresh_pool(target, 2).await;
    target
        .insert_in_transaction(&pool, 1, Ending::Commit)
        .await
        .expect("committed");
    assert!(
        target
            .insert_in_transaction(&pool, 2, Ending::Fail)
            .await
            .is_err()
    );
    let panicked = panics(target.insert_in_transaction(&pool, 3, Ending::Panic)).await;
    assert!(panicked, "the body panicked");
    assert_eq!(
        count::<T>(&pool, "SELECT COUNT(*) FROM items").await,
        1,
        "only the commit stayed"
    );
    assert_eq!(
        count::<T>(&pool, "SELECT COUNT(*) FROM items WHERE id = 1").await,
        1
    );
    let status = pool.status();
    assert_eq!(status.in_use, 0, "{status}");
}

/// Whether polling `future` to its end panics (the panic is caught, as a
/// task's would be).
async fn panics<F: Future>(future: F) -> bool {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(_)) => std::task::Poll::Ready(false),
            Err(_) => std::task::Poll::Ready(true),
        }
    })
    .await
}

/// The transaction helper retries a conflict to success, applying it once.
pub async fn transaction_helper_retries_a_conflict<T: Target>(target: &T) {
    let pool = fresh_pool(target, 3).await;
    let mut conn = pool.get().await.unwrap();
    T::execute(&mut conn, "INSERT INTO items VALUES (1, 0)")
        .await
        .unwrap();
    drop(conn);
    let attempts = target
        .conflicting_increment(&pool, 1)
        .await
        .expect("retried to success");
    assert!(attempts >= 2, "the first attempt met the conflict");
    assert_eq!(
        count::<T>(&pool, "SELECT n FROM items WHERE id = 1").await,
        1,
        "applied exactly once"
    );
}

/// 200 tasks share a pool of 10; every call succeeds and every slot is back.
pub async fn concurrent_load_loses_nothing<T: Target>(target: &T) {
    let pool = fresh_pool(target, 10).await;
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for _ in 0..5 {
                    let mut conn = pool.get().await.expect("served within acquire_timeout");
                    assert_eq!(T::query_i64(&mut conn, "SELECT 1").await.unwrap(), 1);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let status = pool.status();
    assert_eq!((status.in_use, status.waiters), (0, 0), "{status}");
    assert!(status.size <= 10);
    let stats = pool.stats();
    assert_eq!(stats.acquired(), 1 + 200 * 5);
    assert_eq!(stats.timeouts, 0);
}

/// Expands into one test per conformance check for a target: put it in a
/// test file of the backend, with the expression that builds its
/// [`Target`] (it may `.await`). The test file needs tokio with the `macros`
/// and `rt-multi-thread` features.
///
/// ```ignore
/// tidewater_testkit::conformance!(SqliteTarget::in_memory());
/// ```
#[macro_export]
macro_rules! conformance {
    ($target:expr) => {
        $crate::conformance!(@checks $target;
            opens_and_validates,
            reset_clears_session_state_and_open_transactions,
            broken_connection_is_replaced,
            permanent_error_fails_fast,
            transient_error_is_retried,
            transaction_helper_commits_and_rolls_back,
            transaction_helper_retries_a_conflict,
            concurrent_load_loses_nothing,
        );
    };
    (@checks $target:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let target = $target;
                $crate::conformance::$check(&target).await;
            }
        )*
    };
}

/// Writes a server target's [`Target::fresh`],
/// [`Target::permanently_failing`], [`Target::transiently_failing`] and
/// [`Target::heal`] inside its `impl Target`: on the
/// [`pg::PgDatabases`] or [`mariadb::MariaDatabases`] in its field
/// `$databases`, each URL made a manager by `$manager` (a function taking
/// the URL as a `String`).
///
/// ```ignore
/// impl Target for PgTarget {
///     type Manager = PgManager;
///     tidewater_testkit::target_databases!(databases, manager);
///     // execute, query_i64, session_probe, break_connection...
/// }
/// ```
#[macro_export]
macro_rules! target_databases {
    ($databases:ident, $manager:expr) => {
        async fn fresh(&self) -> Self::Manager {
            $manager(self.$databases.fresh_url().await)
        }

        async fn permanently_failing(&self) -> Self::Manager {
            $manager(self.$databases.bad_password_url())
        }

        async fn transiently_failing(&self) -> (Self::Manager, u64) {
            let (url, token) = self.$databases.transient().await;
            ($manager(url), token)
        }

        async fn heal(&self, token: u64) {
            self.$databases.heal(token).await;
        }
    };
}

/// Writes a target's [`Target::insert_in_transaction`] and
/// [`Target::conflicting_increment`] inside its `impl Target`, as calls
/// to the free functions `$insert(pool, id, ending)` and
/// `$conflicting_increment(pool, id)` (whose error converts into a
/// [`BoxError`]). The transaction helper's async closures live in free
/// functions because inside the trait's methods the compiler cannot prove
/// their futures `Send`.
///
/// ```ignore
/// impl Target for PgTarget {
///     // ...
///     tidewater_testkit::target_transactions!(insert, conflicting_increment);
/// }
///
/// async fn insert(pool: &Pool<PgManager>, id: i64, ending: Ending) -> Result<(), AppError> {
///     transaction(pool, RetryPolicy::default(), async move |tx| { /* ... */ }).await
/// }
/// ```
#[macro_export]
macro_rules! target_transactions {
    ($insert:path, $conflicting_increment:path) => {
        async fn insert_in_transaction(
            &self,
            pool: &$crate::__private::Pool<Self::Manager>,
            id: i64,
            ending: $crate::conformance::Ending,
        ) -> ::std::result::Result<(), $crate::conformance::BoxError> {
            ::std::result::Result::Ok($insert(pool, id, ending).await?)
        }

        async fn conflicting_increment(
            &self,
            pool: &$crate::__private::Pool<Self::Manager>,
            id: i64,
        ) -> ::std::result::Result<u32, $crate::conformance::BoxError> {
            ::std::result::Result::Ok($conflicting_increment(pool, id).await?)
        }
    };
}
