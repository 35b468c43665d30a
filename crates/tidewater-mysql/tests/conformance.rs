//! The conformance suite (crates/tidewater-testkit/src/conformance.rs) on
//! the shared MariaDB: a database of its own for each check, dropped when
//! the check's target goes (`tidewater_testkit::conformance::mariadb`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

use tidewater::Pool;
use tidewater_mysql::{MySqlManager, MySqlOptions, RetryPolicy, SessionReset, transaction};
use tidewater_testkit::conformance::mariadb::{self, MariaDatabases};
use tidewater_testkit::conformance::{BoxError, Conn, Ending, SessionProbe, Target};
use tokio::sync::oneshot;

mod common;
use common::AppError;

tidewater_testkit::conformance!(MySqlTarget {
    databases: MariaDatabases::new("conformance")
});

struct MySqlTarget {
    databases: MariaDatabases,
}

fn manager(url: String) -> MySqlManager {
    let options = MySqlOptions {
        url,
        session_reset: SessionReset::ResetConnection,
        ..MySqlOptions::default()
    };
    MySqlManager::new(options).unwrap()
}

impl Target for MySqlTarget {
    type Manager = MySqlManager;

    // fresh, permanently_failing, transiently_failing, heal: self.databases
    tidewater_testkit::target_databases!(databases, manager);

    async fn execute(conn: &mut Conn<Self>, sql: &str) -> Result<(), BoxError> {
        Ok(conn.query_drop(sql).await?)
    }

    async fn query_i64(conn: &mut Conn<Self>, sql: &str) -> Result<i64, BoxError> {
        let value: Option<i64> = conn.query_first(sql).await?;
        Ok(value.ok_or("no row")?)
    }

    fn session_probe(&self) -> SessionProbe {
        mariadb::SESSION_PROBE
    }

    async fn break_connection(&self, conn: &mut Conn<Self>) {
        mariadb::kill(conn.connection_id().into()).await;
    }

    tidewater_testkit::target_transactions!(insert, conflicting_increment);
}

// Free functions hold the helper's `async move` closures, because within
// a Target method the compiler fails to show that their futures are Send.

async fn insert(pool: &Pool<MySqlManager>, id: i64, ending: Ending) -> Result<(), AppError> {
    transaction(pool, RetryPolicy::default(), async move |tx| {
        tx.exec_drop("INSERT INTO items VALUES (?, 1)", (id,))
            .await?;
        match ending {
            Ending::Commit => Ok(()),
            Ending::Fail => Err(AppError::refused()),
            Ending::Panic => panic!("the body panics mid-transaction"),
        }
    })
    .await
}

/// The first attempt's update waits for a row lock another transaction
/// holds, until the lock wait timeout (1 s for these sessions) ends it
/// with 1205; the helper rolls back and retries, and the second attempt
/// lets the other transaction go first.
async fn conflicting_increment(pool: &Pool<MySqlManager>, id: i64) -> Result<u32, AppError> {
    let (locked_tx, locked_rx) = oneshot::channel::<()>();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let (mut locked_rx, mut release_tx) = (Some(locked_rx), Some(release_tx));
    let attempts = Arc::new(AtomicU32::new(0));
    let counted = attempts.clone();
    let increment = transaction(pool, RetryPolicy::default(), async move |tx| {
        match counted.fetch_add(1, SeqCst) {
            0 => locked_rx.take().unwrap().await.unwrap(),
            _ => {
                if let Some(release) = release_tx.take() {
                    release.send(()).unwrap();
                }
            }
        }
        tx.query_drop("SET SESSION innodb_lock_wait_timeout = 1")
            .await?;
        tx.exec_drop("UPDATE items SET n = n + 1 WHERE id = ?", (id,))
            .await?;
        Ok::<_, AppError>(())
    });
    let hold_lock = async {
        let mut conn = pool.get().await.unwrap();
        conn.query_drop("START TRANSACTION").await.unwrap();
        conn.exec_drop("SELECT n FROM items WHERE id = ? FOR UPDATE", (id,))
            .await
            .unwrap();
        locked_tx.send(()).unwrap();
        release_rx.await.unwrap();
        conn.query_drop("ROLLBACK").await.unwrap();
    };
    let (result, ()) = tokio::join!(increment, hold_lock);
    result?;
    Ok(attempts.load(SeqCst))
}
