//! The conformance suite (crates/tidewater-testkit/src/conformance.rs) on
//! the shared MariaDB through diesel-async's `AsyncMariadbConnection`: a
//! database of its own for each check, dropped when the check's target
//! goes.
//!
//! Session state: diesel-async gives no way to send
//! `COM_RESET_CONNECTION`, and no SQL statement clears every user
//! variable, so the target resets the probe's variable with
//! `with_reset_sql` (the mechanism an application uses for the state it
//! changes); the open transaction is rolled back by the manager itself.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use diesel_async::{AsyncMariadbConnection, RunQueryDsl, SimpleAsyncConnection};
use mysql_async::prelude::Queryable;
use tidewater::Pool;
use tidewater_diesel::{MariadbManager, RetryPolicy, transaction};
use tidewater_testkit::FaultProxy;
use tidewater_testkit::conformance::{BoxError, Conn, Ending, SessionProbe, Target};
use tokio::sync::oneshot;

mod common;
use common::{AppError, mariadb_i64};

tidewater_testkit::conformance!(MariadbTarget::default());

/// The shared server.
const ADDR: &str = "127.0.0.1:3306";

#[derive(Default)]
struct MariadbTarget {
    databases: Mutex<Vec<String>>,
    proxies: Mutex<Vec<Arc<FaultProxy>>>,
}

impl MariadbTarget {
    fn manager(url: String) -> MariadbManager {
        MariadbManager::new(url)
            .unwrap()
            .with_reset_sql(["SET @flag = NULL"])
    }

    fn proxy(&self, token: u64) -> Arc<FaultProxy> {
        self.proxies.lock().unwrap()[token as usize].clone()
    }
}

/// Runs `sql` as root on the shared server.
async fn admin(sql: &str) {
    let url = format!("mysql://root@{ADDR}?prefer_socket=false");
    let mut conn = mysql_async::Conn::from_url(url).await.unwrap();
    conn.query_drop(sql)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
    conn.disconnect().await.unwrap();
}

/// Runs `sql` as root from a thread and runtime of its own, so that it
/// also works from `Drop` during a failing test.
fn admin_detached(sql: String) {
    let worker = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let cleanup = async {
                let url = format!("mysql://root@{ADDR}?prefer_socket=false");
                let mut conn = mysql_async::Conn::from_url(url).await?;
                conn.query_drop(&sql).await?;
                conn.disconnect().await
            };
            if let Ok(Err(error)) =
                tokio::time::timeout(std::time::Duration::from_secs(10), cleanup).await
            {
                eprintln!("cleanup `{sql}` failed: {error}");
            }
        });
    });
    let _ = worker.join();
}

impl Drop for MariadbTarget {
    fn drop(&mut self) {
        for name in self.databases.lock().unwrap().drain(..) {
            admin_detached(format!("DROP DATABASE IF EXISTS `{name}`"));
        }
    }
}

impl Target for MariadbTarget {
    type Manager = MariadbManager;

    async fn fresh(&self) -> MariadbManager {
        let name = format!(
            "tidewater_diesel_{}_{:04x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            fastrand::u16(..)
        );
        admin(&format!("CREATE DATABASE `{name}`")).await;
        self.databases.lock().unwrap().push(name.clone());
        Self::manager(format!("mariadb://root@{ADDR}/{name}"))
    }

    async fn permanently_failing(&self) -> MariadbManager {
        Self::manager(format!("mariadb://root:wrong-password@{ADDR}/test"))
    }

    async fn transiently_failing(&self) -> (MariadbManager, u64) {
        let proxy = FaultProxy::start(ADDR.parse().unwrap()).await.unwrap();
        proxy.set_refuse(true).await.unwrap(); // connection refused: transient
        let manager = Self::manager(format!("mariadb://root@{}/test", proxy.addr()));
        let mut proxies = self.proxies.lock().unwrap();
        proxies.push(Arc::new(proxy));
        (manager, proxies.len() as u64 - 1)
    }

    async fn heal(&self, token: u64) {
        self.proxy(token).set_refuse(false).await.unwrap();
    }

    async fn execute(conn: &mut Conn<Self>, sql: &str) -> Result<(), BoxError> {
        Ok(conn.batch_execute(sql).await?)
    }

    async fn query_i64(conn: &mut Conn<Self>, sql: &str) -> Result<i64, BoxError> {
        Ok(mariadb_i64(&mut **conn, sql).await?)
    }

    fn session_probe(&self) -> SessionProbe {
        SessionProbe {
            set: "SET @flag = 7",
            probe: "SELECT COALESCE(@flag, 0)",
            clean: 0,
        }
    }

    async fn break_connection(&self, conn: &mut Conn<Self>) {
        let id = Self::query_i64(conn, "SELECT CONNECTION_ID()")
            .await
            .unwrap();
        admin(&format!("KILL {id}")).await;
    }

    async fn insert_in_transaction(
        &self,
        pool: &Pool<MariadbManager>,
        id: i64,
        ending: Ending,
    ) -> Result<(), BoxError> {
        insert(pool, id, ending).await.map_err(Into::into)
    }

    async fn conflicting_increment(
        &self,
        pool: &Pool<MariadbManager>,
        id: i64,
    ) -> Result<u32, BoxError> {
        conflicting_increment(pool, id).await.map_err(Into::into)
    }
}

// Free functions hold the helper's `async move` closures, because within
// a Target method the compiler fails to show that their futures are Send.

async fn insert(pool: &Pool<MariadbManager>, id: i64, ending: Ending) -> Result<(), AppError> {
    transaction(
        pool,
        RetryPolicy::default(),
        async move |conn: &mut AsyncMariadbConnection| {
            diesel::sql_query("INSERT INTO items VALUES (?, 1)")
                .bind::<diesel::sql_types::BigInt, _>(id)
                .execute(conn)
                .await?;
            match ending {
                Ending::Commit => Ok(()),
                Ending::Fail => Err(AppError::refused()),
                Ending::Panic => panic!("the body panics mid-transaction"),
            }
        },
    )
    .await
}

/// The first attempt's update waits for a row lock another transaction
/// holds, until the lock wait timeout (1 s for these sessions) ends it
/// with 1205; the helper rolls back and retries, and the second attempt
/// lets the other transaction go first.
async fn conflicting_increment(pool: &Pool<MariadbManager>, id: i64) -> Result<u32, AppError> {
    let (locked_tx, locked_rx) = oneshot::channel::<()>();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let (mut locked_rx, mut release_tx) = (Some(locked_rx), Some(release_tx));
    let attempts = Arc::new(AtomicU32::new(0));
    let counted = attempts.clone();
    let increment = transaction(
        pool,
        RetryPolicy::default(),
        async move |conn: &mut AsyncMariadbConnection| {
            match counted.fetch_add(1, SeqCst) {
                0 => locked_rx.take().unwrap().await.unwrap(),
                _ => {
                    if let Some(release) = release_tx.take() {
                        release.send(()).unwrap();
                    }
                }
            }
            conn.batch_execute("SET SESSION innodb_lock_wait_timeout = 1")
                .await?;
            diesel::sql_query(format!("UPDATE items SET n = n + 1 WHERE id = {id}"))
                .execute(conn)
                .await?;
            Ok::<_, AppError>(())
        },
    );
    let hold_lock = async {
        let mut conn = pool.get().await.unwrap();
        conn.batch_execute("START TRANSACTION").await.unwrap();
        conn.batch_execute(&format!("SELECT n FROM items WHERE id = {id} FOR UPDATE"))
            .await
            .unwrap();
        locked_tx.send(()).unwrap();
        release_rx.await.unwrap();
        conn.batch_execute("ROLLBACK").await.unwrap();
    };
    let (result, ()) = tokio::join!(increment, hold_lock);
    result?;
    Ok(attempts.load(SeqCst))
}
