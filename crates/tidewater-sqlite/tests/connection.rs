//! The connection's thread, its calls, resets and pragmas; the transaction
//! helper's retries at `BEGIN` and at `COMMIT`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;
use tidewater::{Backoff, Manager, Pool, PoolConfig, RetryPolicy};
use tidewater_sqlite::{SessionReset, SqliteError, SqliteManager, SqliteOptions, transaction};
use tokio::sync::oneshot;

mod common;
use common::{AppError, SLACK, eventually, within};

/// How long a closure may take to end once interrupted before its
/// connection is given up ("within a second", as `interact` documents).
const INTERRUPT_GRACE: Duration = Duration::from_secs(1);

fn pool(options: SqliteOptions, max_size: u32) -> Pool<SqliteManager> {
    let config = PoolConfig {
        max_size,
        acquire_timeout: Duration::from_secs(5),
        ..PoolConfig::default()
    };
    SqliteManager::new(options)
        .unwrap()
        .into_pool(config)
        .unwrap()
}

/// A policy that outlasts any lock a test holds: each attempt waits out
/// `busy_timeout` (50 ms in [`items`]), so a thousand of them last over
/// 50 s, and the tests release their locks as soon as they have seen an
/// attempt fail.
fn patient() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 1000,
        backoff: Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
        },
    }
}

#[tokio::test(flavor = "current_thread")]
async fn sqlite_never_blocks_the_runtime() {
    let pool = pool(SqliteOptions::in_memory(), 1);
    let conn = pool.get().await.unwrap();
    // The closure blocks its thread until a task on the runtime's only
    // thread releases it, which that task does once the closure has
    // started. Were the call to block the runtime's thread, the task could
    // not run, and the closure would give up waiting (after far longer
    // than anything here takes).
    let (started_tx, started_rx) = oneshot::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let releaser = tokio::spawn(async move {
        started_rx.await.unwrap();
        release_tx.send(()).unwrap();
    });
    let released = conn
        .interact(move |_| {
            started_tx.send(()).unwrap();
            release_rx.recv_timeout(SLACK).is_ok()
        })
        .await
        .unwrap();
    assert!(
        released,
        "no task ran on the runtime while the closure blocked its connection's thread"
    );
    releaser.await.unwrap();
}

#[tokio::test]
async fn a_panicking_closure_is_an_error_and_its_connection_is_replaced() {
    let pool = pool(SqliteOptions::in_memory(), 2);
    let conn = pool.get().await.unwrap();
    let error = conn
        .interact(|_| -> () { panic!("boom") })
        .await
        .unwrap_err();
    assert!(
        matches!(&error, SqliteError::Panicked(message) if message == "boom"),
        "{error}"
    );
    assert!(conn.is_broken());
    assert!(matches!(
        conn.execute_batch("SELECT 1").await,
        Err(SqliteError::Closed)
    ));
    drop(conn);
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.query_value::<i64, _>("SELECT 1", ()).await.unwrap(), 1);
    let (status, stats) = (pool.status(), pool.stats());
    assert_eq!((status.size, status.in_use), (1, 1), "{status}");
    assert_eq!((stats.opened, stats.closed_total()), (2, 1));
}

#[tokio::test]
async fn a_dropped_call_runs_to_its_end_and_its_transaction_is_rolled_back() {
    let pool = pool(SqliteOptions::in_memory(), 1);
    let conn = pool.get().await.unwrap();
    conn.execute_batch("CREATE TABLE t (x)").await.unwrap();
    let finished = Arc::new(AtomicBool::new(false));
    // The closure opens a transaction, says so, and waits for the test.
    let (began_tx, began_rx) = oneshot::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let call = conn.interact({
        let finished = finished.clone();
        move |c| {
            c.execute_batch("BEGIN; INSERT INTO t VALUES (1)")?;
            began_tx.send(()).unwrap();
            let _ = go_rx.recv(); // the test's go, or the test is over
            c.execute_batch("INSERT INTO t VALUES (2)")?;
            finished.store(true, SeqCst);
            Ok::<_, rusqlite::Error>(())
        }
    });
    // The call is dropped mid-call, mid-transaction.
    tokio::select! {
        ended = call => panic!("the call ended before the test let it: {ended:?}"),
        began = began_rx => began.unwrap(),
    }
    assert!(conn.in_transaction(), "a call is still running");
    drop(conn);
    go_tx.send(()).unwrap();

    // The reset runs on the connection's thread after the call, then rolls
    // back what it left open.
    let conn = pool.get().await.unwrap();
    assert!(finished.load(SeqCst), "the closure ran to its end");
    assert_eq!(
        conn.query_value::<i64, _>("SELECT count(*) FROM t", ())
            .await
            .unwrap(),
        0
    );
    assert!(!conn.in_transaction());
    assert_eq!(pool.stats().opened, 1, "reset, not replaced");
}

#[tokio::test]
async fn a_statement_past_the_timeout_is_interrupted_and_the_connection_kept() {
    let statement_timeout = Duration::from_millis(200);
    let options = SqliteOptions {
        statement_timeout: Some(statement_timeout),
        ..SqliteOptions::in_memory()
    };
    let pool = pool(options, 1);
    let conn = pool.get().await.unwrap();
    // Never ends by itself: only the interrupt ends it.
    let endless =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
    let error = within(
        "the endless statement's interrupt",
        statement_timeout + INTERRUPT_GRACE + SLACK,
        conn.query_value::<i64, _>(endless, ()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            error,
            SqliteError::Timeout {
                connection_kept: true,
                ..
            }
        ),
        "{error}"
    );
    assert!(!conn.is_broken());
    assert_eq!(conn.query_value::<i64, _>("SELECT 1", ()).await.unwrap(), 1);
}

#[tokio::test]
async fn a_closure_that_ignores_the_interrupt_costs_its_connection() {
    let statement_timeout = Duration::from_millis(100);
    let options = SqliteOptions {
        statement_timeout: Some(statement_timeout),
        ..SqliteOptions::in_memory()
    };
    let pool = pool(options, 1);
    let conn = pool.get().await.unwrap();
    // The closure runs no statement to interrupt: it waits until the test,
    // having seen the call's error, drops the sender.
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let error = within(
        "the call to give up on the closure",
        statement_timeout + INTERRUPT_GRACE + SLACK,
        conn.interact(move |_| release_rx.recv()),
    )
    .await
    .unwrap_err();
    drop(release_tx);
    assert!(
        matches!(
            error,
            SqliteError::Timeout {
                connection_kept: false,
                ..
            }
        ),
        "{error}"
    );
    assert!(
        error.to_string().contains("the connection was discarded"),
        "{error}"
    );
    assert!(conn.is_broken());
    drop(conn);
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.query_value::<i64, _>("SELECT 1", ()).await.unwrap(), 1);
    assert_eq!(pool.stats().opened, 2);
}

#[tokio::test]
async fn in_memory_data_outlives_every_connection_and_cancelled_checkout() {
    let pool = pool(SqliteOptions::in_memory(), 2);
    let conn = pool.get().await.unwrap();
    conn.execute_batch("CREATE TABLE kept (x); INSERT INTO kept VALUES (42)")
        .await
        .unwrap();
    drop(conn.detach()); // closed: the pool has no connection left
    assert_eq!(pool.status().size, 0);
    for _ in 0..20 {
        // Checkouts cancelled at every stage of opening a connection.
        let _ = tokio::time::timeout(Duration::from_micros(50), pool.get()).await;
    }
    let conn = pool.get().await.unwrap();
    let x: i64 = conn.query_value("SELECT x FROM kept", ()).await.unwrap();
    assert_eq!(x, 42);

    // Another manager's in-memory database is another database.
    let other = self::pool(SqliteOptions::in_memory(), 1);
    let conn = other.get().await.unwrap();
    assert!(conn.execute_batch("SELECT x FROM kept").await.is_err());
}

#[tokio::test]
async fn production_pragmas_by_default_and_each_one_overridable() {
    let dir = tempfile::tempdir().unwrap();
    let pragma = async |pool: &Pool<SqliteManager>, name: &str| -> String {
        let conn = pool.get().await.unwrap();
        let sql = format!("SELECT * FROM pragma_{name}");
        conn.interact(move |c| c.query_row(&sql, [], |r| r.get::<_, rusqlite::types::Value>(0)))
            .await
            .unwrap()
            .map(|v| match v {
                rusqlite::types::Value::Text(text) => text,
                rusqlite::types::Value::Integer(n) => n.to_string(),
                other => format!("{other:?}"),
            })
            .unwrap()
    };
    let defaults = pool(SqliteOptions::file(dir.path().join("a.db")), 1);
    assert_eq!(pragma(&defaults, "journal_mode").await, "wal");
    assert_eq!(pragma(&defaults, "synchronous").await, "1"); // NORMAL
    assert_eq!(pragma(&defaults, "foreign_keys").await, "1");
    assert_eq!(pragma(&defaults, "busy_timeout").await, "5000");

    let options = SqliteOptions {
        busy_timeout: Duration::from_millis(250),
        pragmas: vec![
            ("synchronous".into(), "FULL".into()),
            ("cache_size".into(), "-4000".into()),
            ("journal_mode".into(), "DELETE".into()),
        ],
        ..SqliteOptions::file(dir.path().join("b.db"))
    };
    let custom = pool(options, 1);
    assert_eq!(pragma(&custom, "journal_mode").await, "delete");
    assert_eq!(pragma(&custom, "synchronous").await, "2");
    assert_eq!(pragma(&custom, "cache_size").await, "-4000");
    assert_eq!(pragma(&custom, "busy_timeout").await, "250");
}

#[tokio::test]
async fn a_clean_connection_needs_no_reset_and_a_dirty_one_is_rolled_back() {
    let manager = SqliteManager::new(SqliteOptions::in_memory()).unwrap();
    let mut conn = manager.connect().await.unwrap();
    assert!(!manager.needs_reset(&mut conn), "free when clean");
    conn.execute_batch("CREATE TABLE t (x); BEGIN; INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    assert!(manager.needs_reset(&mut conn));
    manager.reset(&mut conn).await.unwrap();
    assert!(!manager.needs_reset(&mut conn));
    let n: i64 = conn
        .query_value("SELECT count(*) FROM t", ())
        .await
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn a_full_reset_puts_the_session_back_as_connect_left_it() {
    let options = SqliteOptions {
        session_reset: SessionReset::Full,
        pragmas: vec![("cache_size".into(), "-3000".into())],
        ..SqliteOptions::in_memory()
    };
    let pool = pool(options, 1);
    let conn = pool.get().await.unwrap();
    conn.execute_batch(
        "PRAGMA cache_size = 17; PRAGMA recursive_triggers = ON; PRAGMA foreign_keys = OFF;
         PRAGMA busy_timeout = 1; CREATE TEMP TABLE scratch (x); CREATE TEMP VIEW seen AS SELECT 1;
         ATTACH ':memory:' AS aux",
    )
    .await
    .unwrap();
    drop(conn);
    let conn = pool.get().await.unwrap();
    let state: (i64, i64, i64, i64, i64, i64) = conn
        .interact(|c| {
            let one = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0));
            Ok::<_, rusqlite::Error>((
                one("PRAGMA cache_size")?,
                one("PRAGMA recursive_triggers")?,
                one("PRAGMA foreign_keys")?,
                one("PRAGMA busy_timeout")?,
                one("SELECT count(*) FROM temp.sqlite_schema")?,
                one("SELECT count(*) FROM pragma_database_list WHERE name = 'aux'")?,
            ))
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state, (-3000, 0, 1, 5000, 0, 0));
    assert_eq!(pool.stats().opened, 1);
}

#[tokio::test]
async fn read_only_connections_read_and_refuse_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ro.db");
    let writer = pool(SqliteOptions::file(&path), 1);
    writer
        .get()
        .await
        .unwrap()
        .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let options = SqliteOptions {
        read_only: true,
        ..SqliteOptions::file(&path)
    };
    let reader = pool(options, 1);
    let conn = reader.get().await.unwrap();
    assert_eq!(
        conn.query_value::<i64, _>("SELECT x FROM t", ())
            .await
            .unwrap(),
        1
    );
    let error = conn
        .execute("INSERT INTO t VALUES (2)", ())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("SQLITE_READONLY"), "{error}");
    assert_eq!(error.class(), tidewater::ErrorClass::Permanent);
}

/// Another connection to `path`, which has run `begin` (a transaction that
/// takes a lock) and holds the lock until the test runs `COMMIT` on it.
fn hold_lock(path: &std::path::Path, begin: &str) -> Connection {
    let holder = Connection::open(path).unwrap();
    holder.execute_batch(begin).unwrap();
    holder
}

/// How long a transaction that retries on a busy database may take for two
/// attempts: each waits out `busy_timeout` (50 ms in [`items`]) at most,
/// and the retry waits at most the backoff's ceiling (50 ms).
const TWO_ATTEMPTS: Duration = Duration::from_millis(150).saturating_add(SLACK);

/// A pool on a new file holding `items (1, 0)`, with a short busy timeout
/// and `pragmas`; the folder goes with the returned guard.
async fn items(
    pragmas: &[(&str, &str)],
) -> (tempfile::TempDir, std::path::PathBuf, Pool<SqliteManager>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("items.db");
    let options = SqliteOptions {
        busy_timeout: Duration::from_millis(50),
        pragmas: pragmas
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        ..SqliteOptions::file(&path)
    };
    let pool = pool(options, 2);
    pool.get()
        .await
        .unwrap()
        .execute_batch("CREATE TABLE items (id INTEGER PRIMARY KEY, n INTEGER); INSERT INTO items VALUES (1, 0)")
        .await
        .unwrap();
    (dir, path, pool)
}

async fn n(pool: &Pool<SqliteManager>) -> i64 {
    let conn = pool.get().await.unwrap();
    conn.query_value("SELECT n FROM items", ()).await.unwrap()
}

#[tokio::test]
async fn a_writer_busy_at_begin_is_retried_and_named_when_out_of_attempts() {
    let (_dir, path, pool) = items(&[]).await;
    let holder = hold_lock(&path, "BEGIN IMMEDIATE");
    let once = RetryPolicy {
        max_attempts: 1,
        ..patient()
    };
    let error = increment(&pool, once, Arc::default()).await.unwrap_err();
    assert!(
        error.to_string().contains("database is locked (SQLITE_BUSY: another connection held a lock for longer than busy_timeout)"),
        "{error}"
    );
    let (result, bodies) = increment_while_held(&pool, holder).await;
    result.expect("retried until the lock was released");
    assert_eq!(
        bodies, 1,
        "the attempts that met the lock failed at BEGIN, before the body"
    );
    assert_eq!(n(&pool).await, 1);
}

/// Adds 1 to `items.n` in a transaction under `policy`, counting the runs
/// of its body in `bodies`.
async fn increment(
    pool: &Pool<SqliteManager>,
    policy: RetryPolicy,
    bodies: Arc<AtomicU32>,
) -> Result<(), AppError> {
    transaction(pool, policy, move |tx| {
        bodies.fetch_add(1, SeqCst);
        tx.execute("UPDATE items SET n = n + 1 WHERE id = 1", [])?;
        Ok(())
    })
    .await
}

/// Runs a patient [`increment`] while `holder` keeps its lock, until the
/// increment makes a second attempt: each attempt takes a connection from
/// the pool, so a second one while the lock is held means the first met
/// the lock and was retried. Then commits the holder, and returns how the
/// increment ended and how many times its body ran.
async fn increment_while_held(
    pool: &Pool<SqliteManager>,
    holder: Connection,
) -> (Result<(), AppError>, u32) {
    let bodies = Arc::new(AtomicU32::new(0));
    let before = pool.stats().acquired();
    let running = tokio::spawn({
        let (pool, bodies) = (pool.clone(), bodies.clone());
        async move { increment(&pool, patient(), bodies).await }
    });
    eventually(
        "a second attempt while the lock is held",
        TWO_ATTEMPTS,
        || running.is_finished() || pool.stats().acquired() >= before + 2,
    )
    .await;
    assert!(
        !running.is_finished(),
        "the increment ended while the lock was held: {:?}",
        running.await
    );
    holder.execute_batch("COMMIT").unwrap();
    let result = within(
        "the increment once the lock was released",
        TWO_ATTEMPTS,
        running,
    )
    .await
    .unwrap();
    (result, bodies.load(SeqCst))
}

#[tokio::test]
async fn a_commit_that_meets_a_busy_database_is_retried() {
    // In rollback-journal mode a commit needs every reader gone; a reader
    // that stays past busy_timeout makes COMMIT fail with SQLITE_BUSY.
    let (_dir, path, pool) = items(&[("journal_mode", "DELETE")]).await;
    let reader = hold_lock(&path, "BEGIN; SELECT count(*) FROM items");
    let (result, bodies) = increment_while_held(&pool, reader).await;
    result.expect("committed once the reader left");
    assert!(
        bodies >= 2,
        "the first attempt's body ran, then its COMMIT met the reader: {bodies} runs"
    );
    assert_eq!(n(&pool).await, 1, "applied once");
}

#[tokio::test]
async fn a_connection_whose_file_was_replaced_refuses_work_and_the_new_file_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.db");
    let pool = pool(SqliteOptions::file(&path), 1);
    let conn = pool.get().await.unwrap();
    conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES ('old')")
        .await
        .unwrap();
    drop(conn);
    // A new version of the database moved over the live one, the live
    // one's `-wal` and `-shm` removed with it: SQLite would apply a `-wal`
    // left there to the new file (it keeps it when the file moved).
    let next = dir.path().join("next.db");
    Connection::open(&next)
        .unwrap()
        .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES ('new')")
        .unwrap();
    for suffix in ["-wal", "-shm"] {
        std::fs::remove_file(format!("{}{suffix}", path.display())).unwrap();
    }
    std::fs::rename(&next, &path).unwrap();

    let conn = pool.get().await.unwrap();
    let error = conn.execute_batch("SELECT 1").await.unwrap_err();
    assert!(
        matches!(error, SqliteError::FileReplaced { replaced: true, .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("was replaced by another file"),
        "{error}"
    );
    assert!(conn.is_broken());
    drop(conn);
    let conn = pool.get().await.unwrap();
    let x: String = conn.query_value("SELECT x FROM t", ()).await.unwrap();
    assert_eq!(
        x, "new",
        "the old database's WAL was not taken for the new one's"
    );
}
