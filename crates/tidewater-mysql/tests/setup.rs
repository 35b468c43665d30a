//! Setup SQL against the machine's shared MariaDB (127.0.0.1:3306): each
//! test in a database of its own; only session state is set.

use tidewater::{Pool, PoolConfig};
use tidewater_mysql::{MySqlError, MySqlManager, MySqlOptions, SessionReset};

mod common;
use common::{TestDb, refused};

fn pool(db: &TestDb, setup_sql: &[&str], session_reset: SessionReset) -> Pool<MySqlManager> {
    let options = MySqlOptions {
        url: db.url(),
        session_reset,
        setup_sql: setup_sql.iter().map(|s| (*s).to_owned()).collect(),
        ..MySqlOptions::default()
    };
    let config = PoolConfig {
        max_size: 1,
        acquire_timeout: std::time::Duration::from_secs(30),
        ..PoolConfig::default()
    };
    Pool::new(MySqlManager::new(options).unwrap(), config).unwrap()
}

const SETUP: [&str; 3] = [
    "SET SESSION sql_mode = 'ANSI_QUOTES'",
    "SET @tw_marker = 'first'",
    "SET @tw_marker = CONCAT(@tw_marker, '-then-second')",
];

async fn session(conn: &mut tidewater_mysql::MySqlConnection) -> (String, Option<String>) {
    conn.query_first("SELECT @@session.sql_mode, @tw_marker")
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn setup_statements_run_in_order_on_each_new_connection() {
    let db = TestDb::create("setup_runs").await;
    let pool = pool(&db, &SETUP, SessionReset::Rollback);
    let mut conn = pool.get().await.unwrap();
    assert_eq!(
        session(&mut conn).await,
        (
            "ANSI_QUOTES".to_owned(),
            Some("first-then-second".to_owned())
        )
    );
    // The statement timeout is still set too (before the setup).
    let limit: Option<f64> = conn
        .query_first("SELECT @@session.max_statement_time")
        .await
        .unwrap();
    assert_eq!(limit, Some(30.0));
    drop(conn.detach());
    let mut conn = pool.get().await.unwrap();
    assert_eq!(session(&mut conn).await.0, "ANSI_QUOTES");
    assert_eq!(pool.stats().opened, 2);
}

#[tokio::test]
async fn a_bad_setup_statement_fails_fast_with_a_permanent_error_naming_it() {
    let db = TestDb::create("setup_bad").await;
    for (statement, code) in [
        ("SETT SESSION sql_mode = ''", 1064),
        ("SET SESSION tw_no_such_variable = 1", 1193),
    ] {
        let pool = pool(
            &db,
            &["SET SESSION sql_mode = ''", statement],
            SessionReset::Rollback,
        );
        // acquire_timeout is 30 s; `refused` wants the permanent error
        // itself, not a timeout.
        let error = refused(&pool, &format!("setup statement `{statement}` failed")).await;
        assert!(
            error.to_string().contains(&format!("(MySQL {code}")),
            "{error}"
        );
        let tidewater::Error::Connect(cause) = &error else {
            unreachable!()
        };
        let mysql = cause.cause().downcast_ref::<MySqlError>().unwrap();
        assert!(matches!(mysql, MySqlError::Setup { .. }), "{mysql:?}");
        assert_eq!(mysql.code(), Some(code));
        let status = pool.status();
        assert_eq!(status.idle + status.in_use, 0, "dropped");
    }
}

#[tokio::test]
async fn with_reset_connection_the_setup_survives_reuse() {
    let db = TestDb::create("setup_reset").await;
    let pool = pool(&db, &SETUP, SessionReset::ResetConnection);
    let mut conn = pool.get().await.unwrap();
    let server_id = conn.connection_id();
    conn.query_drop(
        "SET SESSION sql_mode = 'TRADITIONAL'; SET @tw_marker = 'changed', @tw_caller = 1",
    )
    .await
    .unwrap();
    drop(conn);

    let mut conn = pool.get().await.unwrap();
    assert_eq!(conn.connection_id(), server_id, "the same session, reset");
    let caller: Option<Option<i64>> = conn.query_first("SELECT @tw_caller").await.unwrap();
    assert_eq!(caller, Some(None), "COM_RESET_CONNECTION ran");
    assert_eq!(
        session(&mut conn).await,
        (
            "ANSI_QUOTES".to_owned(),
            Some("first-then-second".to_owned())
        )
    );
    assert_eq!(pool.stats().opened, 1);
}

#[test]
fn an_empty_setup_statement_is_refused() {
    let options = MySqlOptions {
        setup_sql: vec!["SET time_zone = '+00:00'".into(), String::new()],
        ..MySqlOptions::default()
    };
    let error = MySqlManager::new(options).unwrap_err().to_string();
    assert!(error.contains("setup_sql[1] is empty"), "{error}");
}
