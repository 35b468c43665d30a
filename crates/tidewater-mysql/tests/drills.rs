//! Failure drills against the shared MariaDB, each in a database (and
//! with a user) of its own, never touching the server's settings: sessions
//! killed with `KILL` under load, an account at its `MAX_USER_CONNECTIONS`,
//! a wrong password and an unknown database, and a half-open wire through
//! the testkit's fault proxy. Each drill checks that
//!
//! - the fault happened: callers saw errors, every one of a kind the fault
//!   explains and naming its cause (the pool's verdict, the MySQL code);
//! - every caller's wait ended by its deadline (`acquire_timeout`, then
//!   the query's bound);
//! - the pool recovered by itself once the fault ended: a fresh get and
//!   query succeeded within a bound that follows from the configuration,
//!   and no call failed once the connections the fault touched were gone;
//! - no capacity was lost: every slot serves again afterwards.
//!
//! Nothing waits for a fixed time: each phase ends on an event (the
//! pool's counters, the callers' records, the server's processlist),
//! polled with a deadline far beyond what it needs
//! ([`common::eventually`]). Recovery times are printed (`--nocapture`);
//! no assertion depends on the machine's speed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use tidewater::{ConnectError, Error, Pool, PoolConfig};
use tidewater_mysql::{MySqlError, MySqlManager, MySqlOptions};
use tidewater_testkit::FaultProxy;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep};

mod common;
use common::{TestDb, TestUser, eventually};

const CALLERS: usize = 12;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a drill's callers pause between calls, and its recovery
/// probe between tries.
const PAUSE: Duration = Duration::from_millis(20);

/// The client's codes for a session that ended under it: lost (2013),
/// gone (2006); and MariaDB's "connection was killed" (1927).
const SESSION_ENDED: [u16; 3] = [2013, 2006, 1927];
/// An account at its connection limit: `MAX_USER_CONNECTIONS` (1203), the
/// account's resource limit (1226).
const ACCOUNT_LIMIT: [u16; 2] = [1203, 1226];

fn drill_options(url: String) -> MySqlOptions {
    MySqlOptions {
        url,
        statement_timeout: Some(STATEMENT_TIMEOUT),
        ..MySqlOptions::default()
    }
}

fn drill_pool(url: String, max_size: u32) -> Pool<MySqlManager> {
    let config = PoolConfig {
        max_size,
        acquire_timeout: ACQUIRE_TIMEOUT,
        connect_timeout: CONNECT_TIMEOUT,
        validation_timeout: Duration::from_secs(1),
        maintenance_interval: Duration::from_millis(100),
        ..PoolConfig::default()
    };
    Pool::new(MySqlManager::new(drill_options(url)).unwrap(), config).unwrap()
}

/// The longest one call may take: its `get()` waits at most
/// `acquire_timeout`, its query at most the statement timeout's bound
/// ([`MySqlOptions::query_bound`]); [`common::SLACK`] on top.
fn caller_deadline() -> Duration {
    let query = drill_options(String::new()).query_bound().unwrap();
    ACQUIRE_TIMEOUT + query + common::SLACK
}

/// How soon after a fault ends a fresh get and query must succeed: the
/// pool's next connection attempt comes within the backoff ceiling
/// (`connect_backoff.max`) and takes at most `connect_timeout`, and the
/// call that then succeeds at most [`caller_deadline`].
fn recovery_bound(pool: &Pool<MySqlManager>) -> Duration {
    let config = pool.config();
    config.connect_backoff.max + config.connect_timeout + caller_deadline()
}

/// What a failed call ran into, from the error's type: the pool's verdict
/// or the query's, and the MySQL code behind it (`None`: none, as for the
/// pool's own connect timeout).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Cause {
    /// `get()` waited its whole `acquire_timeout`; the code of the last
    /// connection error.
    AcquireTimeout(Option<u16>),
    /// The open breaker failed the call at once.
    Unavailable(Option<u16>),
    /// A permanent connection error, passed to the caller at once.
    Refused(Option<u16>),
    /// The query outlived the statement timeout; `kept`: its connection
    /// survived (the `KILL QUERY` got through).
    StatementTimeout { kept: bool },
    /// The query failed with this code.
    Query(Option<u16>),
}

/// A failed call: its cause, and the message the caller got.
#[derive(Debug)]
struct Failure {
    cause: Cause,
    message: String,
}

impl Failure {
    fn of_get(error: &Error) -> Self {
        let code = |error: &ConnectError| {
            let cause = error.cause().downcast_ref::<MySqlError>();
            cause.and_then(MySqlError::code)
        };
        let cause = match error {
            Error::Timeout {
                last_connect_error, ..
            } => Cause::AcquireTimeout(last_connect_error.as_ref().and_then(code)),
            Error::Unavailable { cause, .. } => Cause::Unavailable(code(cause)),
            Error::Connect(cause) => Cause::Refused(code(cause)),
            other => panic!("no drill makes the pool answer {other}"),
        };
        Self {
            cause,
            message: error.to_string(),
        }
    }

    fn of_query(error: &MySqlError) -> Self {
        let cause = match error {
            MySqlError::QueryTimeout {
                connection_kept, ..
            } => Cause::StatementTimeout {
                kept: *connection_kept,
            },
            other => Cause::Query(other.code()),
        };
        Self {
            cause,
            message: error.to_string(),
        }
    }
}

/// One call of a caller: get, `SELECT 1`, drop.
async fn call(pool: &Pool<MySqlManager>) -> Result<(), Failure> {
    let mut conn = pool.get().await.map_err(|error| Failure::of_get(&error))?;
    let one: Option<i64> = conn
        .query_first("SELECT 1")
        .await
        .map_err(|error| Failure::of_query(&error))?;
    assert_eq!(one, Some(1));
    Ok(())
}

/// A call's record: when it started and ended, and how.
struct Call {
    started: Instant,
    ended: Instant,
    outcome: Result<(), Failure>,
}

/// `CALLERS` tasks calling in a loop, [`PAUSE`] apart, until stopped; the
/// test reads their records as they come.
struct Load {
    stop: watch::Sender<bool>,
    calls: Arc<Mutex<Vec<Call>>>,
    callers: JoinSet<()>,
}

impl Load {
    fn start(pool: &Pool<MySqlManager>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let calls = Arc::new(Mutex::new(Vec::new()));
        let mut callers = JoinSet::new();
        for _ in 0..CALLERS {
            let (pool, stopped, calls) = (pool.clone(), stopped.clone(), calls.clone());
            callers.spawn(async move {
                while !*stopped.borrow() {
                    let started = Instant::now();
                    let outcome = call(&pool).await;
                    let ended = Instant::now();
                    calls.lock().unwrap().push(Call {
                        started,
                        ended,
                        outcome,
                    });
                    sleep(PAUSE).await;
                }
            });
        }
        Self {
            stop,
            calls,
            callers,
        }
    }

    /// How many of the calls ended so far match `which`.
    fn count(&self, which: impl Fn(&Call) -> bool) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| which(c))
            .count()
    }

    /// Waits until `CALLERS` calls that started at or after `since` have
    /// ended.
    async fn until_calls_since(&self, since: Instant) {
        let made = eventually(async || self.count(|call| call.started >= since) >= CALLERS).await;
        assert!(made, "the callers made no {CALLERS} calls");
    }

    /// Stops the callers; returns every call they made.
    async fn stop(mut self) -> Vec<Call> {
        self.stop.send_replace(true);
        while let Some(caller) = self.callers.join_next().await {
            caller.unwrap();
        }
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

/// Checks a drill's calls, prints a line for the fault matrix, and
/// returns the causes seen with their counts:
///
/// - every call ended by its deadline ([`caller_deadline`]);
/// - calls failed, every one with a cause the fault explains (`expected`);
/// - none failed that ended before the fault began (`fault`), or that
///   started once the pool was whole again (`settled`, when the fault ends).
fn check(
    drill: &str,
    calls: &[Call],
    fault: Instant,
    settled: Option<Instant>,
    expected: impl Fn(Cause) -> bool,
) -> BTreeMap<Cause, usize> {
    assert!(!calls.is_empty(), "{drill}: no calls were made");
    let slowest = calls.iter().map(|c| c.ended - c.started).max().unwrap();
    let deadline = caller_deadline();
    assert!(
        slowest <= deadline,
        "{drill}: a caller waited {slowest:?}, past its deadline {deadline:?}"
    );
    let mut causes = BTreeMap::new();
    let mut examples = BTreeMap::new();
    for call in calls {
        let Err(failure) = &call.outcome else {
            continue;
        };
        let Failure { cause, message } = failure;
        assert!(
            expected(*cause),
            "{drill}: a failure the fault does not explain, {cause:?}: {message}"
        );
        assert!(
            call.ended >= fault,
            "{drill}: a call failed before the fault: {message}"
        );
        if let Some(settled) = settled {
            assert!(
                call.started < settled,
                "{drill}: a call failed {:?} after the pool was whole again: {message}",
                call.started - settled
            );
        }
        examples.entry(*cause).or_insert(message);
        *causes.entry(*cause).or_insert(0) += 1;
    }
    assert!(
        !causes.is_empty(),
        "{drill}: the fault never reached the callers"
    );
    println!(
        "{drill}: {} calls, {} failed {causes:?}, slowest {slowest:?}",
        calls.len(),
        causes.values().sum::<usize>()
    );
    for example in examples.values() {
        println!("  e.g. {example}");
    }
    causes
}

/// How long after `since` (a fault's end) a fresh get and query first
/// succeed, tried every [`PAUSE`]; asserts it is within
/// [`recovery_bound`].
async fn recovery(pool: &Pool<MySqlManager>, since: Instant) -> Duration {
    let bound = recovery_bound(pool);
    loop {
        let outcome = call(pool).await;
        let elapsed = since.elapsed();
        assert!(
            elapsed <= bound,
            "not recovered within {bound:?}, the configuration's bound: {outcome:?} ({})",
            pool.status()
        );
        if outcome.is_ok() {
            return elapsed;
        }
        sleep(PAUSE).await;
    }
}

/// Waits until the pool has closed `opened` connections in all: then
/// every connection it had opened when it had opened `opened` is gone. In
/// a drill nothing closes a connection the fault did not touch (no
/// lifetime or idle timeout expires), so every close counted is one of
/// those.
async fn until_replaced(pool: &Pool<MySqlManager>, opened: u64, what: &str) {
    let replaced = eventually(async || pool.stats().closed_total() >= opened).await;
    assert!(
        replaced,
        "{what}: {} of the first {opened} connections closed ({})",
        pool.stats().closed_total(),
        pool.status()
    );
}

/// Waits until the pool holds `max_size` connections, all of them counted
/// as opened: no attempt is under way, and none can start while no
/// connection closes.
async fn until_whole(pool: &Pool<MySqlManager>) {
    let whole = eventually(async || {
        let stats = pool.stats();
        stats.opened - stats.closed_total() == u64::from(pool.config().max_size)
    })
    .await;
    assert!(whole, "the pool never filled up: {}", pool.status());
}

/// Every slot of the pool serves a query at once: none was lost.
async fn every_slot_serves(pool: &Pool<MySqlManager>) {
    let status = pool.status();
    assert_eq!((status.in_use, status.waiters), (0, 0), "{status}");
    let mut held = Vec::new();
    while held.len() < status.max_size as usize {
        let conn = pool.get().await;
        held.push(conn.unwrap_or_else(|error| panic!("a slot was lost: {error}")));
    }
    for conn in &mut held {
        let one: Option<i64> = conn.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1));
    }
}

/// Kills every session connected to `db`; returns how many.
async fn kill_sessions_on(db: &TestDb) -> usize {
    let mut admin = common::admin().await;
    let ids: Vec<u64> = admin
        .exec(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()",
            (&db.name,),
        )
        .await
        .unwrap();
    for id in &ids {
        // A session may end by itself in between.
        let _ = admin.query_drop(format!("KILL {id}")).await;
    }
    admin.disconnect().await.unwrap();
    ids.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_killed_under_load() {
    let db = TestDb::create("drill_kill").await;
    let pool = drill_pool(db.url(), 5);
    every_slot_serves(&pool).await;
    let load = Load::start(&pool);
    load.until_calls_since(Instant::now()).await;
    let fault = Instant::now();
    for round in 1..=3 {
        // Every connection of the pool is on the server, counted as
        // opened, and none is being opened: the KILL reaches them all.
        until_whole(&pool).await;
        let opened = pool.stats().opened;
        let killed_at = Instant::now();
        assert!(
            kill_sessions_on(&db).await >= 1,
            "the pool's sessions were found"
        );
        let recovered = recovery(&pool, killed_at).await;
        println!("sessions killed, round {round}: recovered {recovered:?} after the KILL");
        // The callers find the killed sessions at their next query.
        until_replaced(&pool, opened, "the killed sessions were replaced").await;
    }
    let settled = Instant::now();
    load.until_calls_since(settled).await;
    let calls = load.stop().await;
    check(
        "sessions killed (KILL, 3 times)",
        &calls,
        fault,
        Some(settled),
        |cause| matches!(cause, Cause::Query(Some(code)) if SESSION_ENDED.contains(&code)),
    );
    every_slot_serves(&pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accounts_connection_limit_reached() {
    let db = TestDb::create("drill_limit").await;
    let user = TestUser::create(&db, "pw", "WITH MAX_USER_CONNECTIONS 3").await;
    let url = user.url("pw", &db);
    // Others hold all three of the account's connections.
    let mut hogs = Vec::new();
    for _ in 0..3 {
        let opts = mysql_async::Opts::from_url(&format!("{url}?prefer_socket=false")).unwrap();
        hogs.push(mysql_async::Conn::new(opts).await.unwrap());
    }
    let fault = Instant::now();
    let pool = drill_pool(url, 3);
    let load = Load::start(&pool);
    let at_limit = |call: &Call| {
        let code = match call.outcome {
            Err(Failure {
                cause: Cause::AcquireTimeout(code) | Cause::Unavailable(code),
                ..
            }) => code,
            _ => None,
        };
        code.is_some_and(|code| ACCOUNT_LIMIT.contains(&code))
    };
    let told = eventually(async || load.count(at_limit) >= CALLERS).await;
    assert!(
        told,
        "the callers never learned the account is at its limit"
    );
    assert_eq!(
        pool.status().size,
        0,
        "the account had no connection to give"
    );
    let stats = pool.stats();
    assert!(
        stats.connect_errors_transient >= 1,
        "the limit is transient"
    );
    assert_eq!(
        stats.connect_errors_permanent, 0,
        "the limit is not permanent"
    );
    // The fault ends when the server has let the hogs go.
    let hog_sessions: Vec<u32> = hogs.iter().map(mysql_async::Conn::id).collect();
    for hog in hogs {
        hog.disconnect().await.unwrap();
    }
    for session in hog_sessions {
        common::until_gone(session).await;
    }
    let freed = Instant::now();
    let recovered = recovery(&pool, freed).await;
    // The pool had no connection the fault could have touched.
    let settled = Instant::now();
    load.until_calls_since(settled).await;
    let calls = load.stop().await;
    check(
        "account at MAX_USER_CONNECTIONS",
        &calls,
        fault,
        Some(settled),
        |cause| {
            matches!(cause, Cause::AcquireTimeout(Some(code)) | Cause::Unavailable(Some(code))
                if ACCOUNT_LIMIT.contains(&code))
        },
    );
    println!("account at MAX_USER_CONNECTIONS: recovered {recovered:?} after slots were freed");
    every_slot_serves(&pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_database_fail_fast_without_a_retry_storm() {
    let db = TestDb::create("drill_refused").await;
    let user = TestUser::create(&db, "right", "").await;
    for (name, url, code) in [
        ("wrong password", user.url("wrong", &db), 1045),
        (
            "unknown database",
            format!("mysql://root@{}/{}_missing", common::ADDR, db.name),
            1049,
        ),
    ] {
        let started = Instant::now();
        let pool = drill_pool(url, 5);
        // After the first permanent error the pool tries again only as its
        // backoff allows (each attempt at least half its ceiling after the
        // last failure), so the attempts in any window have a bound that
        // follows from the configuration, whatever the machine's speed.
        let attempts_allowed = |window| pool.config().most_connect_attempts_within(window);
        // The drill lasts until a storm would break that bound, whether
        // one attempt per call or a steady quicker pace: the callers have
        // made more calls than it allows attempts, and the attempts have
        // been spaced long enough for the backoff to reach its ceiling.
        let backoff = pool.config().connect_backoff;
        let ramp = (1..).find(|&n| backoff.ceiling(n) == backoff.max).unwrap();
        let load = Load::start(&pool);
        let storm_would_show = eventually(async || {
            pool.stats().connect_errors() > u64::from(ramp)
                && load.count(|_| true) as u64 > attempts_allowed(started.elapsed())
        })
        .await;
        assert!(
            storm_would_show,
            "{name}: the drill never ran long enough to show a storm ({} calls, {} attempts)",
            load.count(|_| true),
            pool.stats().connect_errors()
        );
        let calls = load.stop().await;
        let attempts = pool.stats().connect_errors();
        let allowed = attempts_allowed(started.elapsed());
        check(
            name,
            &calls,
            started,
            None,
            |cause| matches!(cause, Cause::Refused(Some(c)) | Cause::Unavailable(Some(c)) if c == code),
        );
        assert!(
            calls.iter().all(|call| call.outcome.is_err()),
            "{name}: a call succeeded"
        );
        println!(
            "{name}: {} calls, {attempts} connection attempts (the backoff allows {allowed})",
            calls.len()
        );
        assert!(
            attempts <= allowed,
            "{name}: {attempts} attempts, more than the backoff allows ({allowed})"
        );
    }
}

/// The wire goes half-open: traffic stops both ways, new connections are
/// accepted and never answered. Queries in flight reach the client-side
/// deadline; the `KILL QUERY` cannot get through either, so those
/// connections are discarded; pings and connection attempts hit their
/// timeouts. Nothing waits past its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_through_a_blackhole() {
    let db = TestDb::create("drill_blackhole").await;
    let proxy = FaultProxy::start(common::addr()).await.unwrap();
    let pool = drill_pool(db.url_at(proxy.addr()), 5);
    every_slot_serves(&pool).await;
    let load = Load::start(&pool);
    load.until_calls_since(Instant::now()).await;
    let fault = Instant::now();
    let opened = pool.stats().opened;
    proxy.set_blackhole(true);
    // The fault shows: every connection open when the wire went half-open
    // is given up (its query stopped at the statement timeout, or its ping
    // at validation_timeout), and an attempt to open a new one hits
    // connect_timeout.
    until_replaced(&pool, opened, "the connections caught were given up").await;
    let attempt_timed_out = eventually(async || pool.stats().connect_timeouts >= 1).await;
    assert!(
        attempt_timed_out,
        "no connection attempt reached connect_timeout ({})",
        pool.status()
    );
    // The partition heals. The connections stuck in it are dropped first,
    // while it lasts, so that none opened before the healing survives it.
    let opened = pool.stats().opened;
    proxy.reset_all().await;
    proxy.set_blackhole(false);
    let healed = Instant::now();
    let recovered = recovery(&pool, healed).await;
    until_replaced(&pool, opened, "the connections reset were replaced").await;
    let settled = Instant::now();
    load.until_calls_since(settled).await;
    let calls = load.stop().await;
    let causes = check(
        "half-open (blackhole)",
        &calls,
        fault,
        Some(settled),
        |cause| match cause {
            Cause::StatementTimeout { .. } | Cause::AcquireTimeout(_) | Cause::Unavailable(_) => {
                true
            }
            Cause::Query(Some(code)) => SESSION_ENDED.contains(&code),
            Cause::Refused(_) | Cause::Query(None) => false,
        },
    );
    assert!(
        causes.contains_key(&Cause::StatementTimeout { kept: false }),
        "queries caught in the partition were stopped at the statement timeout, \
         their connections given up: {causes:?}"
    );
    println!("half-open: recovered {recovered:?} after the wire healed");
    every_slot_serves(&pool).await;
}
