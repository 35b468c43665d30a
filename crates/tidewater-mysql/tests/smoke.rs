//! Smoke tests against the machine's shared MariaDB (127.0.0.1:3306): each
//! test in a database of its own, nothing stopped, filled or reconfigured.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use tidewater::{ErrorClass, Pool, PoolConfig};
use tidewater_mysql::{
    MySqlConnection, MySqlError, MySqlManager, MySqlOptions, RetryPolicy, SessionReset,
    SessionStatus, transaction,
};
use tokio::sync::Barrier;

mod common;
use common::{AppError, TestDb};

const ACCOUNTS: &str = "CREATE TABLE accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL)";

async fn with_accounts(pool: &Pool<MySqlManager>, rows: &str) {
    let mut conn = pool.get().await.unwrap();
    conn.query_drop(ACCOUNTS).await.unwrap();
    conn.query_drop(format!("INSERT INTO accounts VALUES {rows}"))
        .await
        .unwrap();
}

async fn balance(pool: &Pool<MySqlManager>, id: i32) -> i64 {
    let mut conn = pool.get().await.unwrap();
    conn.exec_first("SELECT balance FROM accounts WHERE id = ?", (id,))
        .await
        .unwrap()
        .expect("the account exists")
}

fn options(db: &TestDb) -> MySqlOptions {
    MySqlOptions {
        url: db.url(),
        ..MySqlOptions::default()
    }
}

#[tokio::test]
async fn queries_run_and_clean_connections_are_reused_without_a_reset() {
    let db = TestDb::create("smoke_reuse").await;
    let pool = db.pool(2);
    let mut first = pool.get().await.unwrap();
    let (id, server_id) = (first.id(), first.connection_id());
    let answer: Option<i64> = first.exec_first("SELECT ? + 1", (41,)).await.unwrap();
    assert_eq!(answer, Some(42));
    assert_eq!(first.session_status(), SessionStatus::Idle);
    drop(first);

    let mut again = pool.get().await.unwrap();
    assert_eq!((again.id(), again.connection_id()), (id, server_id));
    // The statement prepared by the first checkout is still cached: the
    // pool did not reset the clean session (a reset would drop it).
    let answer: Option<i64> = again.exec_first("SELECT ? + 1", (1,)).await.unwrap();
    assert_eq!(answer, Some(2));
    let prepared: Option<(String, u64)> = again
        .query_first("SHOW SESSION STATUS LIKE 'Com_stmt_prepare'")
        .await
        .unwrap();
    assert_eq!(prepared.unwrap().1, 1, "prepared once for both checkouts");
    assert_eq!(pool.stats().opened, 1);
}

#[tokio::test]
async fn into_pool_builds_a_working_pool() {
    let db = TestDb::create("smoke_into_pool").await;
    let config = PoolConfig {
        max_size: 2,
        ..PoolConfig::default()
    };
    let pool = MySqlManager::new(options(&db))
        .unwrap()
        .into_pool(config)
        .unwrap(); // its limit check runs in the background
    let mut conn = pool.get().await.unwrap();
    let database: Option<String> = conn.query_first("SELECT DATABASE()").await.unwrap();
    assert_eq!(database.as_deref(), Some(db.name.as_str()));
}

#[tokio::test]
async fn a_transaction_left_open_is_rolled_back_before_reuse() {
    let db = TestDb::create("smoke_left_open").await;
    let pool = db.pool(1);
    with_accounts(&pool, "(1, 100)").await;
    let mut conn = pool.get().await.unwrap();
    conn.query_drop("BEGIN; UPDATE accounts SET balance = 0 WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(conn.session_status(), SessionStatus::InTransaction);
    drop(conn); // forgot to commit

    let conn = pool.get().await.unwrap();
    assert_eq!(conn.session_status(), SessionStatus::Idle, "rolled back");
    drop(conn);
    assert_eq!(balance(&pool, 1).await, 100, "the abandoned update is gone");
    assert_eq!(pool.stats().opened, 1, "the same session, not a new one");
}

#[tokio::test]
async fn an_error_leaves_the_state_unknown_and_the_transaction_is_rolled_back() {
    let db = TestDb::create("smoke_error").await;
    let pool = db.pool(1);
    with_accounts(&pool, "(1, 100)").await;
    let mut conn = pool.get().await.unwrap();
    conn.query_drop("BEGIN").await.unwrap();
    conn.query_drop("UPDATE accounts SET balance = 1 WHERE id = 1")
        .await
        .unwrap();
    // An error does not end a MySQL transaction; the server's answer
    // carries no status, so the session's state is unknown.
    let duplicate = conn.query_drop("INSERT INTO accounts VALUES (1, 5)").await;
    let error = duplicate.unwrap_err();
    assert!(error.to_string().contains("(MySQL 1062)"), "{error}");
    assert_eq!(conn.session_status(), SessionStatus::Unknown);
    drop(conn);
    assert_eq!(balance(&pool, 1).await, 100);
}

#[tokio::test]
async fn autocommit_switched_off_is_reset_with_the_whole_session() {
    let db = TestDb::create("smoke_autocommit").await;
    let pool = db.pool(1);
    with_accounts(&pool, "(1, 100)").await;
    let mut conn = pool.get().await.unwrap();
    conn.query_drop("SET autocommit = 0").await.unwrap();
    conn.query_drop("UPDATE accounts SET balance = 0 WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(conn.session_status(), SessionStatus::AutocommitOff);
    drop(conn);

    let mut conn = pool.get().await.unwrap();
    let autocommit: Option<i64> = conn.query_first("SELECT @@autocommit").await.unwrap();
    assert_eq!(autocommit, Some(1));
    let timer: Option<f64> = conn
        .query_first("SELECT @@max_statement_time")
        .await
        .unwrap();
    assert_eq!(timer, Some(30.0), "the session's statement timeout is back");
    drop(conn);
    assert_eq!(balance(&pool, 1).await, 100);
}

#[tokio::test]
async fn reset_connection_clears_every_kind_of_session_state() {
    let db = TestDb::create("smoke_reset_all").await;
    let options = MySqlOptions {
        session_reset: SessionReset::ResetConnection,
        ..options(&db)
    };
    let pool = db.pool_with(options, 1);
    let mut conn = pool.get().await.unwrap();
    conn.query_drop(
        "SET @flag = 7; SET SESSION sql_mode = 'ANSI'; CREATE TEMPORARY TABLE scratch (x INT); \
         PREPARE stmt FROM 'SELECT 1'",
    )
    .await
    .unwrap();
    drop(conn);

    let mut conn = pool.get().await.unwrap();
    let flag: Option<Option<i64>> = conn.query_first("SELECT @flag").await.unwrap();
    assert_eq!(flag, Some(None), "user variable cleared");
    let mode: Option<String> = conn.query_first("SELECT @@sql_mode").await.unwrap();
    assert_ne!(
        mode.as_deref(),
        Some("ANSI"),
        "session variable back to the default"
    );
    assert!(
        conn.query_drop("SELECT * FROM scratch").await.is_err(),
        "temporary table gone"
    );
    assert!(
        conn.query_drop("EXECUTE stmt").await.is_err(),
        "prepared statement gone"
    );
    let timer: Option<f64> = conn
        .query_first("SELECT @@max_statement_time")
        .await
        .unwrap();
    assert_eq!(timer, Some(30.0), "the statement timeout applied again");
    drop(conn);
    assert_eq!(pool.stats().opened, 1);
}

/// Options with a short statement timeout, so that a stopped query shows
/// quickly.
fn timeout_options(db: &TestDb) -> MySqlOptions {
    MySqlOptions {
        statement_timeout: Some(Duration::from_millis(300)),
        ..options(db)
    }
}

/// Runs `SELECT SLEEP(30)` through the bounded methods of a connection
/// made with `options`: it must stop with a timeout within the bound the
/// statement timeout sets ([`MySqlOptions::query_bound`], plus
/// [`common::SLACK`]), on a session that is still the same and usable.
async fn sleep_is_stopped(conn: &mut MySqlConnection, options: &MySqlOptions) {
    let bound = options.query_bound().unwrap() + common::SLACK;
    let id = conn.connection_id();
    let start = Instant::now();
    let error = conn.query_drop("SELECT SLEEP(30)").await.unwrap_err();
    let took = start.elapsed();
    let kept = matches!(
        error,
        MySqlError::QueryTimeout {
            connection_kept: true,
            ..
        }
    );
    assert!(kept, "stopped, the session kept: {error}");
    assert!(
        took <= bound,
        "{error} after {took:?}, past the bound {bound:?}"
    );
    assert!(!conn.is_broken());
    let same: Option<u32> = conn.query_first("SELECT CONNECTION_ID()").await.unwrap();
    assert_eq!(same, Some(id), "the session survived");
}

/// How many statements the server's own timer (MariaDB's
/// `max_statement_time`) stopped on this session.
async fn stopped_by_the_server(conn: &mut MySqlConnection) -> u64 {
    let stopped: Option<(String, u64)> = conn
        .query_first("SHOW SESSION STATUS LIKE 'Max_statement_time_exceeded'")
        .await
        .unwrap();
    stopped.expect("MariaDB counts them").1
}

#[tokio::test]
async fn the_server_stops_a_query_at_the_statement_timeout() {
    let db = TestDb::create("smoke_server_timeout").await;
    let options = timeout_options(&db);
    let pool = db.pool_with(options.clone(), 1);
    let mut conn = pool.get().await.unwrap();
    sleep_is_stopped(&mut conn, &options).await;
    assert_eq!(
        stopped_by_the_server(&mut conn).await,
        1,
        "the server's timer stopped it, not the client's KILL QUERY"
    );
    // Through the driver directly, the server's timer applies too.
    let raw = Queryable::query_drop(&mut **conn, "SELECT SLEEP(30)")
        .await
        .unwrap_err();
    assert!(raw.to_string().contains("max_statement_time"), "{raw}");
}

/// Where the server's timer is off (MySQL for anything but `SELECT`, or a
/// session that switched it off), the client kills the query.
#[tokio::test]
async fn the_client_kills_a_query_the_server_lets_run() {
    let db = TestDb::create("smoke_client_kill").await;
    let options = timeout_options(&db);
    let pool = db.pool_with(options.clone(), 1);
    let mut conn = pool.get().await.unwrap();
    conn.query_drop("SET SESSION max_statement_time = 0")
        .await
        .unwrap();
    sleep_is_stopped(&mut conn, &options).await;
    assert_eq!(
        stopped_by_the_server(&mut conn).await,
        0,
        "the client's KILL QUERY stopped it"
    );
    drop(conn);
    assert_eq!(pool.stats().closed_total(), 0);
}

/// A caller that gives up on a query half-way leaves the session at an
/// unknown point of the protocol: the pool closes it instead of reusing it.
#[tokio::test]
async fn a_query_cancelled_by_its_caller_costs_its_connection() {
    let db = TestDb::create("smoke_cancel_query").await;
    let pool = db.pool(1);
    let mut conn = pool.get().await.unwrap();
    let id = conn.connection_id();
    let sql = "SELECT SLEEP(30)";
    // The caller gives up once the server runs the query.
    tokio::select! {
        outcome = conn.query_drop(sql) => panic!("`{sql}` ended: {outcome:?}"),
        () = common::until_running(id, sql) => {}
    }
    assert!(conn.is_broken());
    drop(conn);
    let mut conn = pool.get().await.unwrap();
    let one: Option<i64> = conn.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    assert_eq!((pool.stats().opened, pool.stats().closed_total()), (2, 1));
    common::kill(id).await;
}

#[tokio::test]
async fn an_unknown_database_fails_fast_and_says_so() {
    let pool = common::pool_for(&format!(
        "mysql://root@{}/tidewater_no_such_database",
        common::ADDR
    ));
    common::refused(&pool, "(MySQL 1049: unknown database)").await;
    assert_eq!(pool.stats().connect_errors_permanent, 1);
}

#[tokio::test]
async fn a_wrong_password_fails_fast_and_is_not_shown() {
    let url = format!("mysql://root:s3cret-pw@{}/test", common::ADDR);
    let manager = MySqlManager::new(MySqlOptions {
        url: url.clone(),
        ..MySqlOptions::default()
    })
    .unwrap();
    assert!(!format!("{manager:?}").contains("s3cret"), "{manager:?}");
    let pool = common::pool_for(&url);
    let error = common::refused(&pool, "(MySQL 1045: bad password or user)").await;
    let text = error.to_string();
    assert!(
        !text.contains("s3cret") && !format!("{error:?}").contains("s3cret"),
        "{text}"
    );
}

#[test]
fn settings_of_mysql_async_s_own_pool_and_weaker_tls_are_refused() {
    for (param, says) in [
        ("pool_max=10", "max_size"),
        ("conn_ttl=60", "own pool"),
        ("require_ssl=true&verify_ca=false", "always on"),
        ("require_ssl=true&verify_identity=false", "always on"),
    ] {
        let options = MySqlOptions {
            url: format!("mysql://app:s3cret@db/x?{param}"),
            ..MySqlOptions::default()
        };
        let error = MySqlManager::new(options).unwrap_err();
        assert_eq!(error.class(), ErrorClass::Permanent);
        let text = error.to_string();
        assert!(
            text.contains(says) && !text.contains("s3cret"),
            "{param}: {text}"
        );
    }
    let zero = MySqlOptions {
        statement_timeout: Some(Duration::ZERO),
        ..MySqlOptions::default()
    };
    let error = MySqlManager::new(zero).unwrap_err().to_string();
    assert!(error.contains("\"off\""), "{error}");
}

/// `require_ssl=true` takes the `rustls` feature: without it the URL is
/// refused at once, a configuration error naming the feature, rather than
/// connecting in plain text; with it the URL is accepted, and the server
/// decides (see `tls_asked_of_a_server_without_it_fails_permanently`).
/// Each build checks its side: CI runs this crate's tests with every
/// feature and with none.
#[test]
fn tls_needs_the_rustls_feature() {
    let options = MySqlOptions {
        url: "mysql://app@db/x?require_ssl=true".into(),
        ..MySqlOptions::default()
    };
    let built = MySqlManager::new(options);
    if cfg!(feature = "rustls") {
        built.expect("with the rustls feature, require_ssl=true is accepted");
    } else {
        let error = built.unwrap_err().to_string();
        assert!(error.contains("`rustls` feature"), "{error}");
    }
}

/// The shared server has no TLS: asked for, TLS fails at once and for good,
/// never falling back to plain text.
#[cfg(feature = "rustls")]
#[tokio::test]
async fn tls_asked_of_a_server_without_it_fails_permanently() {
    let url = format!("mysql://root@{}/test?require_ssl=true", common::ADDR);
    common::refused(&common::pool_for(&url), "does not offer it").await;
}

#[tokio::test]
async fn the_transaction_helper_commits_and_rolls_back() {
    let db = TestDb::create("smoke_tx").await;
    let pool = db.pool(2);
    with_accounts(&pool, "(1, 100), (2, 0)").await;
    let moved = transaction(&pool, RetryPolicy::default(), async |tx| {
        tx.query_drop("UPDATE accounts SET balance = balance - 10 WHERE id = 1")
            .await?;
        tx.query_drop("UPDATE accounts SET balance = balance + 10 WHERE id = 2")
            .await?;
        Ok::<_, AppError>(10)
    })
    .await
    .unwrap();
    assert_eq!(moved, 10);
    assert_eq!((balance(&pool, 1).await, balance(&pool, 2).await), (90, 10));

    let refused = transaction(&pool, RetryPolicy::default(), async |tx| {
        tx.query_drop("UPDATE accounts SET balance = 0 WHERE id = 1")
            .await?;
        Err::<(), _>(AppError::refused())
    })
    .await;
    assert!(refused.is_err());
    assert_eq!(balance(&pool, 1).await, 90, "rolled back on error");

    // A panic rolls back too: the conformance suite checks it.
}

/// Two transactions take the same two rows in opposite orders: InnoDB
/// finds the deadlock and rolls one back (1213); the helper runs it again.
#[tokio::test]
async fn a_deadlock_is_retried() {
    let db = TestDb::create("smoke_deadlock").await;
    let pool = db.pool(3);
    with_accounts(&pool, "(1, 0), (2, 0)").await;
    let attempts = AtomicU32::new(0);
    let both_hold_one = Barrier::new(2);
    let (one, two) = tokio::join!(
        cross(&pool, &attempts, &both_hold_one, 1, 2),
        cross(&pool, &attempts, &both_hold_one, 2, 1)
    );
    one.unwrap();
    two.unwrap();
    assert_eq!(attempts.load(SeqCst), 3, "one of the two ran twice");
    assert_eq!((balance(&pool, 1).await, balance(&pool, 2).await), (2, 2));
}

async fn cross(
    pool: &Pool<MySqlManager>,
    attempts: &AtomicU32,
    barrier: &Barrier,
    first: i32,
    second: i32,
) -> Result<(), AppError> {
    let mut round = 0;
    transaction(pool, RetryPolicy::default(), async move |tx| {
        attempts.fetch_add(1, SeqCst);
        round += 1;
        let add = "UPDATE accounts SET balance = balance + 1 WHERE id = ?";
        tx.exec_drop(add, (first,)).await?;
        if round == 1 {
            barrier.wait().await;
        }
        tx.exec_drop(add, (second,)).await?;
        Ok(())
    })
    .await
}

/// A transaction whose task is aborted half-way: its connection is closed,
/// so the server rolls back and frees the row at once.
#[tokio::test]
async fn a_cancelled_transaction_frees_its_locks_at_once() {
    let db = TestDb::create("smoke_cancel").await;
    let pool = db.pool(2);
    with_accounts(&pool, "(1, 100)").await;
    let (locked_tx, locked_rx) = tokio::sync::oneshot::channel();
    let holder = tokio::spawn({
        let pool = pool.clone();
        async move { hold_forever(&pool, locked_tx).await }
    });
    let session = locked_rx.await.unwrap();
    holder.abort();
    let _ = holder.await;
    // Kept idle in the pool, the session would hold its lock; closed, it
    // leaves the server, which ends its transaction on the way out.
    common::until_gone(session).await;
    assert_eq!(
        pool.stats().closed_total(),
        1,
        "the pool closed the abandoned session"
    );

    let mut conn = pool.get().await.unwrap();
    // Fail at once rather than wait, should the lock still be held.
    conn.query_drop("SET SESSION innodb_lock_wait_timeout = 0")
        .await
        .unwrap();
    conn.query_drop("UPDATE accounts SET balance = 1 WHERE id = 1")
        .await
        .expect("the row is free: the abandoned transaction was rolled back");
    drop(conn);
    assert_eq!(balance(&pool, 1).await, 1);
}

/// Locks account 1 in a transaction that never ends; sends its session's
/// id once the lock is held.
async fn hold_forever(
    pool: &Pool<MySqlManager>,
    locked: tokio::sync::oneshot::Sender<u32>,
) -> Result<(), AppError> {
    let mut locked = Some(locked);
    transaction(pool, RetryPolicy::default(), async move |tx| {
        tx.query_drop("UPDATE accounts SET balance = 0 WHERE id = 1")
            .await?;
        let session = tx.connection_id();
        locked.take().unwrap().send(session).unwrap();
        std::future::pending::<()>().await;
        Ok(())
    })
    .await
}

/// How much a reset on every checkout costs against resetting only when
/// needed. Prints checkouts per second; asserts nothing about speed.
/// `cargo test --release -p tidewater-mysql --test smoke -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test"]
async fn measure_the_cost_of_resetting_every_checkout() {
    let db = TestDb::create("smoke_measure").await;
    for reset in [SessionReset::Rollback, SessionReset::ResetConnection] {
        let pool = db.pool_with(
            MySqlOptions {
                session_reset: reset,
                ..options(&db)
            },
            4,
        );
        for (what, prepared) in [("text query", false), ("prepared statement", true)] {
            let start = Instant::now();
            let tasks: Vec<_> = (0..4)
                .map(|_| {
                    let pool = pool.clone();
                    tokio::spawn(async move {
                        for n in 0..2_000_i64 {
                            let mut conn = pool.get().await.unwrap();
                            let _: Option<i64> = if prepared {
                                conn.exec_first("SELECT ?", (n,)).await.unwrap()
                            } else {
                                conn.query_first("SELECT 1").await.unwrap()
                            };
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            let rate = 8_000.0 / start.elapsed().as_secs_f64();
            println!("{reset:?}, {what}: {rate:.0} checkouts+queries/s");
        }
    }
}
