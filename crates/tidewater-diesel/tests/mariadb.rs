//! MySQL/MariaDB specifics on the shared MariaDB (never stopped or
//! reconfigured: a user and a database of the test's own): typed
//! permanent errors, rotating credentials, a plain `BEGIN` rolled back, a
//! query future dropped mid-query discarded.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use mysql_async::prelude::Queryable;
use tidewater::credentials::{Credentials, CredentialsProvider};
use tidewater::{CloseReason, ErrorClass, Manager, Pool, PoolConfig};
use tidewater_diesel::{DieselError, MariadbManager, MysqlManager};

mod common;
use common::{eventually, mariadb_i64};

const ADDR: &str = "127.0.0.1:3306";

async fn admin(sql: &str) {
    let url = format!("mysql://root@{ADDR}?prefer_socket=false");
    let mut conn = mysql_async::Conn::from_url(url).await.unwrap();
    conn.query_drop(sql)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
    conn.disconnect().await.unwrap();
}

fn unique(what: &str) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!("tidewater_diesel_{what}_{secs}_{:04x}", fastrand::u16(..))
}

/// A database and a user of the test's own, dropped at the end.
struct Scratch {
    db: String,
    user: String,
}

impl Scratch {
    async fn new(password: &str) -> Self {
        let (db, user) = (unique("db"), unique("user"));
        admin(&format!("CREATE DATABASE `{db}`")).await;
        admin(&format!(
            "CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'"
        ))
        .await;
        admin(&format!("GRANT ALL ON `{db}`.* TO '{user}'@'%'")).await;
        Self { db, user }
    }

    async fn drop_all(self) {
        admin(&format!("DROP DATABASE IF EXISTS `{}`", self.db)).await;
        admin(&format!("DROP USER IF EXISTS '{}'@'%'", self.user)).await;
    }
}

fn config(max_size: u32) -> PoolConfig {
    PoolConfig {
        max_size,
        acquire_timeout: Duration::from_secs(5),
        ..PoolConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_password_and_unknown_database_are_typed_permanent_errors() {
    let error = MariadbManager::new(format!("mariadb://root:wrong-password@{ADDR}/test"))
        .unwrap()
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(&error, DieselError::Mysql(mysql_async::Error::Server(e)) if e.code == 1045),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert!(error.to_string().contains("bad password"), "{error}");
    assert!(!error.to_string().contains("wrong-password"), "{error}");
    let error = MysqlManager::new(format!("mysql://root@{ADDR}/no_such_database"))
        .unwrap()
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(&error, DieselError::Mysql(mysql_async::Error::Server(e)) if e.code == 1049),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Permanent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_credentials_are_fetched_for_each_new_connection() {
    let scratch = Scratch::new("secret-v1").await;
    let current = Arc::new(Mutex::new(String::from("secret-v1")));
    let provider = CredentialsProvider::new({
        let current = current.clone();
        move || {
            let password = current.lock().unwrap().clone();
            async move { Ok(Credentials::password(password)) }
        }
    });
    let url = format!("mariadb://{}@{ADDR}/{}", scratch.user, scratch.db);
    let pool = Pool::new(
        MariadbManager::new(url).unwrap().with_credentials(provider),
        config(3),
    )
    .unwrap();
    let mut first = pool.get().await.unwrap();
    assert_eq!(mariadb_i64(&mut *first, "SELECT 1").await.unwrap(), 1);
    admin(&format!(
        "ALTER USER '{}'@'%' IDENTIFIED BY 'secret-v2'",
        scratch.user
    ))
    .await;
    *current.lock().unwrap() = "secret-v2".into();
    let mut second = pool.get().await.unwrap();
    assert_eq!(mariadb_i64(&mut *second, "SELECT 2").await.unwrap(), 2);
    *current.lock().unwrap() = "secret-v1".into(); // stale
    let error = pool.get().await.unwrap_err();
    let tidewater::Error::Connect(cause) = &error else {
        panic!("not a connect error: {error:?}")
    };
    assert_eq!(cause.class(), ErrorClass::Permanent, "{error}");
    drop((first, second));
    scratch.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_begin_is_rolled_back_and_a_dropped_query_discards_the_connection() {
    let scratch = Scratch::new("pw").await;
    let url = format!("mariadb://root@{ADDR}/{}", scratch.db);
    let pool = Pool::new(MariadbManager::new(url).unwrap(), config(1)).unwrap();
    let mut conn = pool.get().await.unwrap();
    conn.batch_execute("CREATE TABLE items (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)")
        .await
        .unwrap();
    let first = conn.id();
    conn.batch_execute("BEGIN").await.unwrap();
    conn.batch_execute("INSERT INTO items VALUES (1, 1)")
        .await
        .unwrap();
    drop(conn);
    let mut conn = pool.get().await.unwrap();
    assert_eq!(conn.id(), first, "rolled back, not replaced");
    assert_eq!(
        mariadb_i64(&mut *conn, "SELECT COUNT(*) FROM items")
            .await
            .unwrap(),
        0
    );

    // A query whose future is dropped while the server runs it.
    let session = mariadb_i64(&mut *conn, "SELECT CONNECTION_ID()")
        .await
        .unwrap();
    let running = async {
        let url = format!("mysql://root@{ADDR}?prefer_socket=false");
        let mut admin = mysql_async::Conn::from_url(url).await.unwrap();
        let seen = eventually(async || {
            // No row, or a row whose INFO is NULL until the query arrives.
            let info: Option<Option<String>> = admin
                .exec_first(
                    "SELECT INFO FROM information_schema.PROCESSLIST WHERE ID = ?",
                    (session,),
                )
                .await
                .unwrap();
            info.flatten().is_some_and(|info| info.contains("SLEEP"))
        })
        .await;
        admin.disconnect().await.unwrap();
        seen
    };
    tokio::select! {
        result = diesel::sql_query("SELECT SLEEP(3)").execute(&mut *conn) => panic!("ended before it was seen: {result:?}"),
        seen = running => assert!(seen, "the query never showed as running"),
    }
    drop(conn);
    let mut conn = pool.get().await.unwrap();
    assert_ne!(
        conn.id(),
        first,
        "a connection with an answer pending is discarded"
    );
    assert_eq!(pool.stats().closed_by(CloseReason::Broken), 1);
    assert_eq!(mariadb_i64(&mut *conn, "SELECT 1").await.unwrap(), 1);
    drop(conn);
    scratch.drop_all().await;
}
