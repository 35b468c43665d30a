//! Smoke tests against the machine's shared PostgreSQL (127.0.0.1:5432,
//! user postgres, database test, trust auth): nothing here stops, fills or
//! reconfigures it. Each test uses tables of its own.

use std::time::Duration;

use tidewater::{CloseReason, Error, ErrorClass, Pool, PoolConfig};
use tidewater_postgres::{
    PgError, PgManager, PgOptions, RetryPolicy, SessionReset, TransactionStatus, check_capacity,
    transaction,
};

mod common;
use common::AppError;

const SHARED: &str = "postgres://postgres@127.0.0.1:5432/test";

fn pool_with(options: PgOptions, max_size: u32) -> Pool<PgManager> {
    let config = PoolConfig {
        max_size,
        acquire_timeout: Duration::from_secs(10),
        ..PoolConfig::default()
    };
    Pool::new(PgManager::new(options).unwrap(), config).unwrap()
}

fn shared(max_size: u32) -> Pool<PgManager> {
    pool_with(
        PgOptions {
            url: SHARED.into(),
            ..PgOptions::default()
        },
        max_size,
    )
}

/// A table of its own for one test, dropped at the end.
async fn table(pool: &Pool<PgManager>, name: &str) {
    let conn = pool.get().await.unwrap();
    conn.batch_execute(&format!(
        "DROP TABLE IF EXISTS {name}; CREATE TABLE {name} (id int PRIMARY KEY, balance bigint NOT NULL)"
    ))
    .await
    .unwrap();
}

async fn drop_table(pool: &Pool<PgManager>, name: &str) {
    pool.get()
        .await
        .unwrap()
        .batch_execute(&format!("DROP TABLE {name}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn queries_run_and_connections_are_reused() {
    let pool = shared(2);
    let first = pool.get().await.unwrap();
    let id = first.id();
    let answer: i32 = first
        .query_one("SELECT $1::int + 1", &[&41])
        .await
        .unwrap()
        .get(0);
    assert_eq!(answer, 42);
    assert_eq!(first.transaction_status(), TransactionStatus::Idle);
    drop(first);
    assert_eq!(pool.get().await.unwrap().id(), id);
    assert_eq!(pool.stats().opened, 1);
}

#[tokio::test]
async fn a_transaction_left_open_is_rolled_back_before_reuse() {
    let pool = shared(1);
    table(&pool, "smoke_left_open").await;
    let conn = pool.get().await.unwrap();
    conn.batch_execute("BEGIN; INSERT INTO smoke_left_open VALUES (1, 100)")
        .await
        .unwrap();
    assert_eq!(conn.transaction_status(), TransactionStatus::InTransaction);
    drop(conn); // forgot to commit

    let conn = pool.get().await.unwrap();
    assert_eq!(
        conn.transaction_status(),
        TransactionStatus::Idle,
        "rolled back on checkout"
    );
    let rows: i64 = conn
        .query_one("SELECT count(*) FROM smoke_left_open", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "the abandoned insert is gone");
    drop(conn);
    assert_eq!(
        pool.stats().opened,
        1,
        "the same connection, reset, not replaced"
    );
    drop_table(&pool, "smoke_left_open").await;
}

#[tokio::test]
async fn a_failed_transaction_is_rolled_back_too() {
    let pool = shared(1);
    let conn = pool.get().await.unwrap();
    conn.batch_execute("BEGIN").await.unwrap();
    assert!(conn.batch_execute("SELECT 1/0").await.is_err());
    // The error can reach the caller a moment before the server's
    // ReadyForQuery that reports the failed transaction.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while conn.transaction_status() != TransactionStatus::Failed {
        assert!(
            tokio::time::Instant::now() < deadline,
            "status stayed {:?}",
            conn.transaction_status()
        );
        tokio::task::yield_now().await;
    }
    drop(conn);
    let conn = pool.get().await.unwrap();
    assert_eq!(
        conn.query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
}

#[tokio::test]
async fn discard_all_clears_session_state() {
    let options = PgOptions {
        url: SHARED.into(),
        session_reset: SessionReset::DiscardAll,
        ..PgOptions::default()
    };
    let pool = pool_with(options, 1);
    let conn = pool.get().await.unwrap();
    conn.batch_execute("SET application_name = 'changed'")
        .await
        .unwrap();
    drop(conn);
    let conn = pool.get().await.unwrap();
    let name: String = conn
        .query_one("SHOW application_name", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "tidewater");
}

#[tokio::test]
async fn statements_are_prepared_once_per_session() {
    let pool = shared(1);
    let conn = pool.get().await.unwrap();
    let prepared = "SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql";
    let before: i64 = conn.client().query_one(prepared, &[]).await.unwrap().get(0);
    for round in 0..3 {
        let echoed: i32 = conn
            .query_one("SELECT $1::int", &[&round])
            .await
            .unwrap()
            .get(0);
        assert_eq!(echoed, round);
    }
    let after: i64 = conn.client().query_one(prepared, &[]).await.unwrap().get(0);
    assert_eq!(
        after - before,
        1,
        "three queries, one prepared statement kept"
    );
}

#[tokio::test]
async fn discard_all_forgets_the_cached_statements_it_deallocates() {
    let options = PgOptions {
        url: SHARED.into(),
        session_reset: SessionReset::DiscardAll,
        ..PgOptions::default()
    };
    let pool = pool_with(options, 1);
    for _ in 0..2 {
        let conn = pool.get().await.unwrap();
        assert_eq!(
            conn.query_one("SELECT 7", &[])
                .await
                .unwrap()
                .get::<_, i32>(0),
            7
        );
    }
}

#[tokio::test]
async fn a_query_past_the_statement_timeout_is_cancelled_on_the_server() {
    let options = PgOptions {
        url: SHARED.into(),
        statement_timeout: Some(Duration::from_millis(300)),
        ..PgOptions::default()
    };
    let pool = pool_with(options, 1);
    let conn = pool.get().await.unwrap();
    let pid: i32 = conn
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let error = conn.query("SELECT pg_sleep(30)", &[]).await.unwrap_err();
    assert!(
        matches!(
            error,
            PgError::QueryTimeout {
                connection_kept: true,
                ..
            }
        ),
        "{error}"
    );
    let same: i32 = conn
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(same, pid, "the connection survived the cancel");
    drop(conn);
    assert_eq!(pool.stats().closed_total(), 0);
}

#[tokio::test]
async fn an_unknown_database_fails_fast_and_says_so() {
    let options = PgOptions {
        url: "postgres://postgres@127.0.0.1:5432/no_such_db".into(),
        ..PgOptions::default()
    };
    let pool = pool_with(options, 2);
    let error = pool.get().await.unwrap_err();
    let Error::Connect(cause) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(cause.class(), ErrorClass::Permanent);
    assert!(
        error
            .to_string()
            .contains("SQLSTATE 3D000: unknown database"),
        "{error}"
    );
    assert_eq!(pool.stats().connect_errors_permanent, 1);
}

#[tokio::test]
async fn the_next_host_is_tried_when_one_refuses() {
    let refusing = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("host=127.0.0.1,127.0.0.1 port={refusing},5432 user=postgres dbname=test");
    let pool = pool_with(
        PgOptions {
            url,
            ..PgOptions::default()
        },
        1,
    );
    let conn = pool.get().await.unwrap();
    assert_eq!(
        conn.query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
}

#[tokio::test]
async fn target_session_attrs_are_checked() {
    let url = format!("{SHARED}?target_session_attrs=read-write");
    let pool = pool_with(
        PgOptions {
            url,
            ..PgOptions::default()
        },
        1,
    );
    assert!(pool.get().await.is_ok(), "the shared server is a primary");
    let manager = PgManager::new(PgOptions {
        url: format!("{SHARED}?target_session_attrs=read-only"),
        ..PgOptions::default()
    })
    .unwrap();
    let error = tidewater::Manager::connect(&manager).await.unwrap_err();
    assert!(
        error.to_string().contains("target_session_attrs=read-only"),
        "{error}"
    );
}

async fn balance(pool: &Pool<PgManager>, table: &str, id: i32) -> i64 {
    let conn = pool.get().await.unwrap();
    conn.query_one(
        &format!("SELECT balance FROM {table} WHERE id = $1"),
        &[&id],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn the_transaction_helper_commits_and_rolls_back() {
    let pool = shared(2);
    table(&pool, "smoke_tx").await;
    let inserted = transaction(&pool, RetryPolicy::default(), async |tx| {
        tx.execute("INSERT INTO smoke_tx VALUES (1, 100), (2, 0)", &[])
            .await?;
        Ok::<_, AppError>(2)
    })
    .await
    .unwrap();
    assert_eq!(inserted, 2);

    let refused = transaction(&pool, RetryPolicy::default(), async |tx| {
        tx.execute(
            "UPDATE smoke_tx SET balance = balance - 500 WHERE id = 1",
            &[],
        )
        .await?;
        Err::<(), _>(AppError::Refused)
    })
    .await;
    assert!(matches!(refused, Err(AppError::Refused)));
    assert_eq!(
        balance(&pool, "smoke_tx", 1).await,
        100,
        "rolled back on error"
    );

    let pool2 = pool.clone();
    let panicked = tokio::spawn(async move {
        transaction(&pool2, RetryPolicy::default(), async |tx| {
            tx.execute("UPDATE smoke_tx SET balance = 0 WHERE id = 1", &[])
                .await?;
            panic!("bug in the middle of a transaction");
            #[allow(unreachable_code)]
            Ok::<(), AppError>(())
        })
        .await
    })
    .await;
    assert!(panicked.unwrap_err().is_panic());
    assert_eq!(
        balance(&pool, "smoke_tx", 1).await,
        100,
        "rolled back on panic"
    );
    assert_eq!(pool.stats().closed_by(CloseReason::Panicked), 1);
    drop_table(&pool, "smoke_tx").await;
}

#[tokio::test]
async fn a_serialization_failure_is_retried() {
    let pool = shared(3);
    table(&pool, "smoke_conflict").await;
    pool.get()
        .await
        .unwrap()
        .execute("INSERT INTO smoke_conflict VALUES (1, 0)", &[])
        .await
        .unwrap();
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let (mut entered_tx, mut go_rx) = (Some(entered_tx), Some(go_rx));

    // The first attempt reads, waits until a concurrent transaction has
    // committed a write to the same row, then writes: a conflict.
    let counted = attempts.clone();
    let conflicted = transaction(&pool, RetryPolicy::default(), async |tx| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tx.batch_execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
            .await?;
        let current: i64 = tx
            .query_one("SELECT balance FROM smoke_conflict WHERE id = 1", &[])
            .await?
            .get(0);
        if let (Some(entered), Some(go)) = (entered_tx.take(), go_rx.take()) {
            entered.send(()).unwrap();
            go.await.unwrap();
        }
        tx.execute(
            "UPDATE smoke_conflict SET balance = $1 WHERE id = 1",
            &[&(current + 1)],
        )
        .await?;
        Ok::<_, AppError>(())
    });
    let interfere = async {
        entered_rx.await.unwrap();
        pool.get()
            .await
            .unwrap()
            .execute(
                "UPDATE smoke_conflict SET balance = balance + 10 WHERE id = 1",
                &[],
            )
            .await
            .unwrap();
        go_tx.send(()).unwrap();
    };
    let (result, ()) = tokio::join!(conflicted, interfere);
    result.unwrap();
    assert_eq!(
        attempts.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the first attempt conflicted and was retried"
    );
    assert_eq!(balance(&pool, "smoke_conflict", 1).await, 11);
    drop_table(&pool, "smoke_conflict").await;
}

#[tokio::test]
async fn the_capacity_check_reads_the_servers_budget() {
    let pool = shared(2);
    let capacity = check_capacity(&pool, 1).await.unwrap();
    assert!(capacity.max_connections >= 10, "{capacity:?}");
    assert!(capacity.in_use >= 1 && capacity.own >= 1);
    assert!(capacity.warning().is_none(), "a pool of 2 fits: {capacity}");
    let many = check_capacity(&pool, 1000).await.unwrap();
    let warning = many.warning().expect("2 x 1000 replicas cannot fit");
    assert!(warning.contains("could exhaust the server"), "{warning}");
}

#[tokio::test]
async fn into_pool_reports_the_servers_capacity_to_the_pool() {
    let options = PgOptions {
        url: SHARED.into(),
        ..PgOptions::default()
    };
    let pool = PgManager::new(options)
        .unwrap()
        .into_pool(PoolConfig {
            max_size: 2,
            ..PoolConfig::default()
        })
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let capacity = loop {
        if let Some(capacity) = pool.capacity() {
            break capacity;
        }
        assert!(tokio::time::Instant::now() < deadline, "no capacity report");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        capacity.max_connections >= 10 && capacity.available < capacity.max_connections,
        "{capacity:?}"
    );
}
