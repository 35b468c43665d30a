//! MariaDB (the shared server, a database of its own per test) and SQLite
//! beyond the conformance suite: setup SQL, rotating credentials, a
//! cancelled query, the error a missing file gives.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::{Connection, MySql, Sqlite};
use tidewater::credentials::{Credentials, CredentialsProvider};
use tidewater::{Error, ErrorClass, PoolConfig};
use tidewater_sqlx::SqlxManager;

mod common;
use common::{MARIADB, MariaDb, query_i64};

fn config(max_size: u32) -> PoolConfig {
    PoolConfig {
        max_size,
        acquire_timeout: Duration::from_secs(10),
        validation_timeout: Duration::from_secs(5),
        ..PoolConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_setup_sql_runs_on_each_new_connection() {
    let db = MariaDb::create("sqlx_setup").await;
    let pool = SqlxManager::<MySql>::from_url(&db.url())
        .unwrap()
        .with_setup_sql(["SET @tenant = 41 + 1", "SET SESSION wait_timeout = 4321"])
        .into_pool(config(2))
        .unwrap();
    let (mut a, mut b) = (pool.get().await.unwrap(), pool.get().await.unwrap());
    assert_ne!(a.id(), b.id());
    for conn in [&mut a, &mut b] {
        assert_eq!(query_i64(&mut **conn, "SELECT @tenant").await.unwrap(), 42);
        assert_eq!(
            query_i64(&mut **conn, "SELECT @@SESSION.wait_timeout")
                .await
                .unwrap(),
            4321
        );
    }
    drop((a, b));

    let broken = SqlxManager::<MySql>::from_url(&db.url())
        .unwrap()
        .with_setup_sql(["SET SESSION no_such_variable = 1"])
        .into_pool(config(2))
        .unwrap();
    let error = broken.get().await.expect_err("the setup fails");
    let Error::Connect(cause) = &error else {
        panic!("not a permanent connect error: {error:?}")
    };
    assert_eq!(cause.class(), ErrorClass::Permanent);
    assert!(error.to_string().contains("no_such_variable"), "{error}");
    assert!(error.to_string().contains("MySQL error 1193"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_credentials_rotate_for_new_connections() {
    let db = MariaDb::create("sqlx_credentials").await;
    let user = format!("twsqlx_{}", &db.name[db.name.len() - 8..]);
    let mut admin = sqlx::MySqlConnection::connect(&format!("mysql://root@{MARIADB}/test"))
        .await
        .unwrap();
    common::execute(
        &mut admin,
        &format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'v1'"),
    )
    .await
    .unwrap();
    let secret = Arc::new(Mutex::new(String::from("v1")));
    let provider = CredentialsProvider::new({
        let (secret, user) = (secret.clone(), user.clone());
        move || {
            let credentials =
                Credentials::password(secret.lock().unwrap().clone()).with_user(&user);
            async move { Ok(credentials) }
        }
    });
    let pool = SqlxManager::<MySql>::from_url(&format!("mysql://nobody@{MARIADB}"))
        .unwrap()
        .with_credentials(provider)
        .into_pool(config(2))
        .unwrap();
    let rotate = {
        let user = user.clone();
        async move {
            let mut admin = sqlx::MySqlConnection::connect(&format!("mysql://root@{MARIADB}/test"))
                .await
                .unwrap();
            let mut old = pool.get().await.unwrap();
            common::execute(
                &mut admin,
                &format!("ALTER USER '{user}'@'%' IDENTIFIED BY 'v2'"),
            )
            .await
            .unwrap();
            *secret.lock().unwrap() = "v2".into();
            let mut new = pool
                .get()
                .await
                .expect("a new connection with the new password");
            assert_ne!(old.id(), new.id());
            for conn in [&mut old, &mut new] {
                assert_eq!(query_i64(&mut **conn, "SELECT 1").await.unwrap(), 1);
            }
        }
    };
    let outcome = tokio::spawn(rotate).await;
    let _ = common::execute(&mut admin, &format!("DROP USER '{user}'@'%'")).await;
    outcome.unwrap();
}

/// A `SLEEP` whose future was dropped: the reset reads its result and
/// the connection comes back clean, without the transaction it opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cancelled_query_leaves_nothing_open() {
    let db = MariaDb::create("sqlx_cancelled").await;
    let pool = SqlxManager::<MySql>::from_url(&db.url())
        .unwrap()
        .into_pool(config(1))
        .unwrap();
    let mut conn = pool.get().await.unwrap();
    let id = conn.id();
    common::execute(&mut *conn, "CREATE TABLE t (x INT) ENGINE = InnoDB")
        .await
        .unwrap();
    let cancelled = tokio::time::timeout(
        Duration::from_millis(100),
        common::execute(
            &mut *conn,
            "START TRANSACTION; INSERT INTO t VALUES (1); SELECT SLEEP(0.5)",
        ),
    )
    .await;
    assert!(cancelled.is_err(), "the query outlived its timeout");
    drop(conn);
    let mut conn = pool.get().await.unwrap();
    assert_eq!(conn.id(), id, "drained and kept");
    assert_eq!(
        query_i64(&mut *conn, "SELECT COUNT(*) FROM t")
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        query_i64(&mut *conn, "SELECT @@in_transaction")
            .await
            .unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_setup_sql_and_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let pool = SqlxManager::<Sqlite>::from_url(&format!("sqlite://{}?mode=rwc", path.display()))
        .unwrap()
        .with_setup_sql(["PRAGMA cache_size = -1234"])
        .into_pool(config(2))
        .unwrap();
    let (mut a, mut b) = (pool.get().await.unwrap(), pool.get().await.unwrap());
    for conn in [&mut a, &mut b] {
        assert_eq!(
            query_i64(&mut **conn, "PRAGMA cache_size").await.unwrap(),
            -1234
        );
    }
    drop((a, b));

    let missing = dir.path().join("no-such-folder").join("app.db");
    let pool = SqlxManager::<Sqlite>::new(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(missing)
            .create_if_missing(true),
    )
    .into_pool(config(2))
    .unwrap();
    let error = pool.get().await.expect_err("the folder is missing");
    let Error::Connect(cause) = &error else {
        panic!("not a permanent connect error: {error:?}")
    };
    assert_eq!(cause.class(), ErrorClass::Permanent);
    assert!(
        error.to_string().contains("cannot open the database file"),
        "{error}"
    );
}
