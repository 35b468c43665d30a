//! The conformance suite (crates/tidewater-testkit/src/conformance.rs) on
//! PostgreSQL through diesel-async: a private cluster shared by the
//! checks of this binary, a database of its own for each check
//! (`tidewater_testkit::conformance::pg`).

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use tidewater::Pool;
use tidewater_diesel::{PgManager, RetryPolicy, SessionReset, transaction};
use tidewater_testkit::conformance::pg::{self, PgDatabases};
use tidewater_testkit::conformance::{BoxError, Conn, Ending, SessionProbe, Target};

mod common;
use common::{AppError, pg_i64};

tidewater_testkit::conformance!(PgTarget {
    databases: PgDatabases::shared().await
});

struct PgTarget {
    databases: PgDatabases,
}

fn manager(url: String) -> PgManager {
    PgManager::new(url)
        .unwrap()
        .with_session_reset(SessionReset::Full)
}

impl Target for PgTarget {
    type Manager = PgManager;

    // fresh, permanently_failing, transiently_failing, heal: self.databases
    tidewater_testkit::target_databases!(databases, manager);

    async fn execute(conn: &mut Conn<Self>, sql: &str) -> Result<(), BoxError> {
        Ok(conn.batch_execute(sql).await?)
    }

    async fn query_i64(conn: &mut Conn<Self>, sql: &str) -> Result<i64, BoxError> {
        Ok(pg_i64(&mut **conn, sql).await?)
    }

    fn session_probe(&self) -> SessionProbe {
        pg::SESSION_PROBE
    }

    async fn break_connection(&self, conn: &mut Conn<Self>) {
        let pid = Self::query_i64(conn, "SELECT pg_backend_pid()")
            .await
            .unwrap();
        self.databases.terminate(pid).await;
    }

    tidewater_testkit::target_transactions!(insert, conflicting_increment);
}

// The transaction helper's async closures live in free functions: inside
// the trait's methods the compiler cannot prove their futures `Send`.

async fn insert(pool: &Pool<PgManager>, id: i64, ending: Ending) -> Result<(), AppError> {
    transaction(
        pool,
        RetryPolicy::default(),
        async move |conn: &mut AsyncPgConnection| {
            diesel::sql_query(format!("INSERT INTO items VALUES ({id}, 1)"))
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

/// The first attempt reads, lets a concurrent write commit, then writes:
/// a serialization failure the helper retries.
async fn conflicting_increment(pool: &Pool<PgManager>, id: i64) -> Result<u32, AppError> {
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let (mut entered_tx, mut go_rx) = (Some(entered_tx), Some(go_rx));
    let attempts = std::sync::Arc::new(AtomicU32::new(0));
    let counted = attempts.clone();
    let increment = transaction(
        pool,
        RetryPolicy::default(),
        async move |conn: &mut AsyncPgConnection| {
            counted.fetch_add(1, SeqCst);
            conn.batch_execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                .await?;
            let n = pg_i64(conn, &format!("SELECT n FROM items WHERE id = {id}")).await?;
            if let (Some(entered), Some(go)) = (entered_tx.take(), go_rx.take()) {
                entered.send(()).unwrap();
                go.await.unwrap();
            }
            diesel::sql_query(format!("UPDATE items SET n = {} WHERE id = {id}", n + 1))
                .execute(conn)
                .await?;
            Ok::<_, AppError>(())
        },
    );
    let interfere = async {
        entered_rx.await.unwrap();
        let mut conn = pool.get().await.unwrap();
        conn.batch_execute(&format!("UPDATE items SET n = n WHERE id = {id}"))
            .await
            .unwrap();
        go_tx.send(()).unwrap();
    };
    let (result, ()) = tokio::join!(increment, interfere);
    result?;
    Ok(attempts.load(SeqCst))
}
