//! Setup SQL: statements run on each new connection after the pragmas, and
//! again after a full session reset.

use std::time::Duration;

use tidewater::{Error, ErrorClass, Pool, PoolConfig};
use tidewater_sqlite::{SessionReset, SqliteConnection, SqliteError, SqliteManager, SqliteOptions};

fn pool(options: SqliteOptions) -> Pool<SqliteManager> {
    let config = PoolConfig {
        max_size: 1,
        acquire_timeout: Duration::from_secs(30),
        ..PoolConfig::default()
    };
    SqliteManager::new(options)
        .unwrap()
        .into_pool(config)
        .unwrap()
}

/// A file database in `dir` whose connections attach `audit.db` and get a
/// temporary view.
fn with_setup(dir: &tempfile::TempDir, session_reset: SessionReset) -> SqliteOptions {
    let audit = dir.path().join("audit.db");
    SqliteOptions {
        session_reset,
        setup_sql: vec![
            format!("ATTACH '{}' AS audit", audit.display()),
            "CREATE TABLE IF NOT EXISTS audit.log (entry TEXT)".into(),
            "CREATE TEMP VIEW tw_answer AS SELECT 42 AS answer".into(),
        ],
        ..SqliteOptions::file(dir.path().join("app.db"))
    }
}

async fn is_set_up(conn: &SqliteConnection) -> bool {
    let attached: i64 = conn
        .query_value(
            "SELECT count(*) FROM pragma_database_list WHERE name = 'audit'",
            (),
        )
        .await
        .unwrap();
    let answer: Result<i64, _> = conn.query_value("SELECT answer FROM tw_answer", ()).await;
    attached == 1 && matches!(answer, Ok(42))
}

#[tokio::test]
async fn setup_statements_run_on_each_new_connection() {
    let dir = tempfile::tempdir().unwrap();
    let pool = pool(with_setup(&dir, SessionReset::Rollback));
    let conn = pool.get().await.unwrap();
    assert!(is_set_up(&conn).await);
    conn.execute("INSERT INTO audit.log VALUES ('first')", ())
        .await
        .unwrap();
    drop(conn.detach());
    let conn = pool.get().await.unwrap();
    assert!(is_set_up(&conn).await);
    let entries: i64 = conn
        .query_value("SELECT count(*) FROM audit.log", ())
        .await
        .unwrap();
    assert_eq!(entries, 1, "the same attached file");
    assert_eq!(pool.stats().opened, 2);
}

#[tokio::test]
async fn a_bad_setup_statement_fails_fast_with_a_permanent_error_naming_it() {
    let options = SqliteOptions {
        setup_sql: vec![
            "CREATE TEMP TABLE fine (x)".into(),
            "CREATE TEMP VIEW broken AS SELEC 1".into(),
        ],
        ..SqliteOptions::in_memory()
    };
    let pool = pool(options);
    // acquire_timeout is 30 s: a timeout would be a `Timeout`, not `Connect`.
    let error = pool.get().await.unwrap_err();
    let Error::Connect(cause) = &error else {
        panic!("not a permanent connect error: {error}");
    };
    assert_eq!(cause.class(), ErrorClass::Permanent);
    let text = error.to_string();
    assert!(
        text.contains("while running setup statement `CREATE TEMP VIEW broken AS SELEC 1`"),
        "{text}"
    );
    assert!(text.contains("syntax error"), "{text}");
    assert!(matches!(
        cause.cause().downcast_ref::<SqliteError>(),
        Some(SqliteError::Open { .. })
    ));
    let status = pool.status();
    assert_eq!(status.idle + status.in_use, 0, "dropped");
}

#[tokio::test]
async fn with_a_full_reset_the_setup_survives_reuse() {
    let dir = tempfile::tempdir().unwrap();
    let pool = pool(with_setup(&dir, SessionReset::Full));
    let conn = pool.get().await.unwrap();
    let id = conn.id();
    conn.execute_batch("DETACH audit; DROP VIEW tw_answer; CREATE TEMP TABLE left_behind (x)")
        .await
        .unwrap();
    assert!(!is_set_up(&conn).await);
    drop(conn);

    let conn = pool.get().await.unwrap();
    assert_eq!(conn.id(), id, "the same connection, reset");
    let left: i64 = conn
        .query_value(
            "SELECT count(*) FROM temp.sqlite_schema WHERE name = 'left_behind'",
            (),
        )
        .await
        .unwrap();
    assert_eq!(left, 0, "the full reset ran");
    assert!(is_set_up(&conn).await, "and the setup after it");
    assert_eq!(pool.stats().opened, 1);
}

#[test]
fn an_empty_setup_statement_is_refused() {
    let options = SqliteOptions {
        setup_sql: vec!["CREATE TEMP TABLE t (x)".into(), " ".into()],
        ..SqliteOptions::in_memory()
    };
    let error = SqliteManager::new(options).unwrap_err().to_string();
    assert!(error.contains("setup_sql[1] is empty"), "{error}");
}
