//! Failure drills against the shared MariaDB, each in a database (and
//! with a user) of its own, never touching the server's settings: sessions
//! killed with `KILL` under load, an account at its `MAX_USER_CONNECTIONS`,
//! a wrong password and an unknown database, and a half-open wire through
//! the testkit's fault proxy. Each drill checks that
//!
//! - every caller's wait ended by its deadline,
//! - every error named its cause (a MySQL code, or the pool's own),
//! - the pool recovered by itself once the fault ended,
//! - no capacity was lost: every slot serves again afterwards.
//!
//! Recovery times are printed (`--nocapture`); the assertions check only
//! generous bounds, never a speed.

use std::collections::BTreeMap;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use tidewater::{Pool, PoolConfig};
use tidewater_mysql::{MySqlManager, MySqlOptions};
use tidewater_testkit::FaultProxy;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep};

mod common;
use common::{TestDb, TestUser};

const CALLERS: usize = 12;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest a caller may take: acquire (2 s), then a query past the
/// statement timeout (1 s, and 0.5 s for the server's own timer to fire
/// first), then the `KILL QUERY` grace (3 s), plus slack for a loaded
/// 2-core machine.
const CALLER_DEADLINE: Duration = Duration::from_secs(10);
/// How soon after a fault ends a fresh get and query must succeed (the
/// connect backoff ceiling is 2 s).
const RECOVERY_BOUND: Duration = Duration::from_secs(15);

fn drill_pool(url: String, max_size: u32) -> Pool<MySqlManager> {
    let options = MySqlOptions {
        url,
        statement_timeout: Some(STATEMENT_TIMEOUT),
        ..MySqlOptions::default()
    };
    let config = PoolConfig {
        max_size,
        acquire_timeout: ACQUIRE_TIMEOUT,
        connect_timeout: Duration::from_secs(2),
        validation_timeout: Duration::from_secs(1),
        maintenance_interval: Duration::from_millis(100),
        ..PoolConfig::default()
    };
    Pool::new(MySqlManager::new(options).unwrap(), config).unwrap()
}

/// One call of a caller: get, `SELECT 1`, drop.
async fn call(pool: &Pool<MySqlManager>) -> Result<(), String> {
    let mut conn = pool.get().await.map_err(|error| error.to_string())?;
    let one: Option<i64> = conn
        .query_first("SELECT 1")
        .await
        .map_err(|error| error.to_string())?;
    assert_eq!(one, Some(1));
    Ok(())
}

/// A call's record: when it started, how long it took, how it failed.
struct Call {
    started: Instant,
    took: Duration,
    error: Option<String>,
}

/// `CALLERS` tasks calling in a loop, 20 ms apart, until stopped.
struct Load {
    stop: watch::Sender<bool>,
    callers: JoinSet<Vec<Call>>,
}

impl Load {
    fn start(pool: &Pool<MySqlManager>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let mut callers = JoinSet::new();
        for _ in 0..CALLERS {
            let (pool, stopped) = (pool.clone(), stopped.clone());
            callers.spawn(async move {
                let mut calls = Vec::new();
                while !*stopped.borrow() {
                    let started = Instant::now();
                    let error = call(&pool).await.err();
                    let took = started.elapsed();
                    calls.push(Call {
                        started,
                        took,
                        error,
                    });
                    sleep(Duration::from_millis(20)).await;
                }
                calls
            });
        }
        Self { stop, callers }
    }

    /// Stops the callers; returns the calls that started before `until`.
    async fn stop(self, until: Instant) -> Vec<Call> {
        self.stop.send_replace(true);
        let mut calls: Vec<Call> = self
            .callers
            .join_all()
            .await
            .into_iter()
            .flatten()
            .collect();
        calls.retain(|call| call.started < until);
        calls
    }
}

/// The cause an error names: its MySQL code, or what the pool says.
fn cause_of(error: &str) -> Option<String> {
    if let Some(at) = error.find("(MySQL ") {
        let code: String = error[at + 7..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        return Some(format!("MySQL {code}"));
    }
    [
        "database unavailable",
        "timed out after",
        "cannot reach MySQL",
        "query stopped after the statement timeout",
        "connection attempt timed out",
    ]
    .into_iter()
    .find(|marker| error.contains(marker))
    .map(str::to_owned)
}

/// Checks a drill's calls and prints a line for the fault matrix; returns
/// the causes seen, with their counts.
fn check(drill: &str, calls: &[Call]) -> BTreeMap<String, usize> {
    assert!(!calls.is_empty(), "{drill}: no calls were made");
    let slowest = calls.iter().map(|call| call.took).max().unwrap();
    assert!(
        slowest <= CALLER_DEADLINE,
        "{drill}: a caller waited {slowest:?}"
    );
    let mut causes = BTreeMap::new();
    let mut examples = BTreeMap::new();
    for error in calls.iter().filter_map(|call| call.error.as_deref()) {
        let cause =
            cause_of(error).unwrap_or_else(|| panic!("{drill}: an error names no cause: {error}"));
        examples.entry(cause.clone()).or_insert(error);
        *causes.entry(cause).or_insert(0) += 1;
    }
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

/// How long after `since` a fresh get and query first succeed.
async fn recovery(pool: &Pool<MySqlManager>, since: Instant) -> Duration {
    while call(pool).await.is_err() {
        assert!(
            since.elapsed() < RECOVERY_BOUND,
            "not recovered within {RECOVERY_BOUND:?}: {}",
            pool.status()
        );
        sleep(Duration::from_millis(20)).await;
    }
    since.elapsed()
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
    sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        assert!(
            kill_sessions_on(&db).await >= 1,
            "the pool's sessions were found"
        );
        sleep(Duration::from_millis(600)).await;
    }
    let ended = Instant::now();
    let recovered = recovery(&pool, ended).await;
    let calls = load.stop(ended + recovered).await;
    check("sessions killed (KILL, 3 times in 2 s)", &calls);
    println!("sessions killed: recovered {recovered:?} after the last KILL");
    assert!(
        pool.stats().closed_total() >= 5,
        "the killed sessions were replaced"
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
    let pool = drill_pool(url, 3);
    let load = Load::start(&pool);
    sleep(Duration::from_secs(2)).await;
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
    for hog in hogs {
        hog.disconnect().await.unwrap();
    }
    let freed = Instant::now();
    let recovered = recovery(&pool, freed).await;
    let calls = load.stop(freed + recovered).await;
    let causes = check("account at MAX_USER_CONNECTIONS", &calls);
    assert!(
        causes.contains_key("MySQL 1203") || causes.contains_key("MySQL 1226"),
        "the callers learned the account is at its limit: {causes:?}"
    );
    println!("account at MAX_USER_CONNECTIONS: recovered {recovered:?} after slots were freed");
    every_slot_serves(&pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_database_fail_fast_without_a_retry_storm() {
    let db = TestDb::create("drill_refused").await;
    let user = TestUser::create(&db, "right", "").await;
    for (name, url, code) in [
        ("wrong password", user.url("wrong", &db), "MySQL 1045"),
        (
            "unknown database",
            format!("mysql://root@{}/{}_missing", common::ADDR, db.name),
            "MySQL 1049",
        ),
    ] {
        let started = Instant::now();
        let pool = drill_pool(url, 5);
        let load = Load::start(&pool);
        sleep(Duration::from_secs(3)).await;
        let calls = load.stop(Instant::now()).await;
        let causes = check(name, &calls);
        let failed_fast = calls
            .iter()
            .filter(|call| call.error.is_some() && call.took < ACQUIRE_TIMEOUT)
            .count();
        assert_eq!(
            failed_fast,
            calls.len(),
            "{name}: every call failed, and before its deadline"
        );
        assert!(
            causes.contains_key(code),
            "{name}: {code} never reached the callers: {causes:?}"
        );
        // The pool stops trying for waiting callers at the first permanent
        // error; later attempts keep to the backoff (each at least half
        // its ceiling after the last failure), so their number has a
        // bound that follows from the configuration, whatever the speed
        // of the machine; a storm would be one per call.
        let attempts = pool.stats().connect_errors();
        let config = pool.config();
        let bound = config.max_connecting
            * config
                .connect_backoff()
                .most_attempts_within(started.elapsed());
        println!(
            "{name}: {} calls, {attempts} connection attempts (the backoff allows {bound})",
            calls.len()
        );
        assert!(
            attempts <= u64::from(bound),
            "{name}: {attempts} attempts, more than the backoff allows ({bound})"
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
    sleep(Duration::from_millis(300)).await;
    proxy.set_blackhole(true);
    // Longer than a query's whole bound (1.5 s, then 3 s to kill it).
    sleep(Duration::from_secs(5)).await;
    proxy.set_blackhole(false);
    proxy.reset_all().await; // connections stuck in the partition are dropped
    let healed = Instant::now();
    let recovered = recovery(&pool, healed).await;
    let calls = load.stop(healed + recovered).await;
    check("half-open (blackhole 5 s)", &calls);
    println!("half-open: recovered {recovered:?} after the wire healed");
    every_slot_serves(&pool).await;
}
