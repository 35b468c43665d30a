//! The conformance suite (crates/tidewater-testkit/src/conformance.rs) on
//! the shared MariaDB through diesel-async's `AsyncMariadbConnection`: a
//! database of its own for each check, dropped when the check's target
//! goes (`tidewater_testkit::conformance::mariadb`).
//!
//! Session state: diesel-async gives no way to send
//! `COM_RESET_CONNECTION`, and no SQL statement clears every user
//! variable, so the target resets the probe's variable with
//! `with_reset_sql` (the mechanism an application uses for the state it
//! changes); the open transaction is rolled back by the manager itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

use diesel_async::{AsyncMariadbConnection, RunQueryDsl, SimpleAsyncConnection};
use tidewater::Pool;
use tidewater_diesel::{MariadbManager, RetryPolicy, transaction};
use tidewater_testkit::conformance::mariadb::{self, MariaDatabases};
use tidewater_testkit::conformance::{BoxError, Conn, Ending, SessionProbe, Target};
use tokio::sync::oneshot;

mod common;
use common::{AppError, mariadb_i64};

tidewater_testkit::conformance!(MariadbTarget {
    databases: MariaDatabases::new("diesel_conformance")
});

struct MariadbTarget {
    databases: MariaDatabases,
}

/// On the testkit's `mysql://` URLs, written `mariadb://` as this
/// backend's users write them.
fn manager(url: String) -> MariadbManager {
    MariadbManager::new(url.replacen("mysql://", "mariadb://", 1))
        .unwrap()
        .with_reset_sql(["SET @flag = NULL"])
}

impl Target for MariadbTarget {
    type Manager = MariadbManager;

    // fresh, permanently_failing, transiently_failing, heal: self.databases
    tidewater_testkit::target_databases!(databases, manager);

    async fn execute(conn: &mut Conn<Self>, sql: &str) -> Result<(), BoxError> {
        Ok(conn.batch_execute(sql).await?)
    }

    async fn query_i64(conn: &mut Conn<Self>, sql: &str) -> Result<i64, BoxError> {
        Ok(mariadb_i64(&mut **conn, sql).await?)
    }

    fn session_probe(&self) -> SessionProbe {
        mariadb::SESSION_PROBE
    }

    async fn break_connection(&self, conn: &mut Conn<Self>) {
        let id = Self::query_i64(conn, "SELECT CONNECTION_ID()")
            .await
            .unwrap();
        mariadb::kill(id.try_into().unwrap()).await;
    }

    tidewater_testkit::target_transactions!(insert, conflicting_increment);
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
