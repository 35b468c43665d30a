//! The conformance suite (crates/tidewater-testkit/src/conformance.rs) on
//! PostgreSQL: a private cluster shared by the checks of this binary, a
//! database of its own for each check (`tidewater_testkit::conformance::pg`).

use std::sync::atomic::Ordering::SeqCst;

use tidewater::Pool;
use tidewater_postgres::{PgManager, PgOptions, RetryPolicy, SessionReset, transaction};
use tidewater_testkit::conformance::pg::{self, PgDatabases};
use tidewater_testkit::conformance::{BoxError, Conn, Ending, SessionProbe, Target};
use tokio_postgres::SimpleQueryMessage;

mod common;
use common::AppError;

tidewater_testkit::conformance!(PgTarget {
    databases: PgDatabases::shared().await
});

struct PgTarget {
    databases: PgDatabases,
}

fn manager(url: String) -> PgManager {
    let options = PgOptions {
        url,
        session_reset: SessionReset::DiscardAll,
        ..PgOptions::default()
    };
    PgManager::new(options).unwrap()
}

impl Target for PgTarget {
    type Manager = PgManager;

    // fresh, permanently_failing, transiently_failing, heal: self.databases
    tidewater_testkit::target_databases!(databases, manager);

    async fn execute(conn: &mut Conn<Self>, sql: &str) -> Result<(), BoxError> {
        Ok(conn.batch_execute(sql).await?)
    }

    async fn query_i64(conn: &mut Conn<Self>, sql: &str) -> Result<i64, BoxError> {
        let rows = conn.simple_query(sql).await?;
        let value = rows.iter().find_map(|message| match message {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        });
        Ok(value.ok_or("no row")?.parse()?)
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
    transaction(pool, RetryPolicy::default(), async move |tx| {
        tx.execute("INSERT INTO items VALUES ($1, 1)", &[&id])
            .await?;
        match ending {
            Ending::Commit => Ok(()),
            Ending::Fail => Err(AppError::Refused),
            Ending::Panic => panic!("the body panics mid-transaction"),
        }
    })
    .await
}

async fn conflicting_increment(pool: &Pool<PgManager>, id: i64) -> Result<u32, AppError> {
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let (mut entered_tx, mut go_rx) = (Some(entered_tx), Some(go_rx));
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = attempts.clone();
    // The first attempt reads, lets a concurrent write commit, then
    // writes: a serialization failure the helper retries.
    let increment = transaction(pool, RetryPolicy::default(), async move |tx| {
        counted.fetch_add(1, SeqCst);
        tx.batch_execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
            .await?;
        let n: i64 = tx
            .query_one("SELECT n FROM items WHERE id = $1", &[&id])
            .await?
            .get(0);
        if let (Some(entered), Some(go)) = (entered_tx.take(), go_rx.take()) {
            entered.send(()).unwrap();
            go.await.unwrap();
        }
        tx.execute("UPDATE items SET n = $1 WHERE id = $2", &[&(n + 1), &id])
            .await?;
        Ok::<_, AppError>(())
    });
    let interfere = async {
        entered_rx.await.unwrap();
        let conn = pool.get().await.unwrap();
        conn.execute("UPDATE items SET n = n WHERE id = $1", &[&id])
            .await
            .unwrap();
        go_tx.send(()).unwrap();
    };
    let (result, ()) = tokio::join!(increment, interfere);
    result?;
    Ok(attempts.load(SeqCst))
}
