//! The conformance suite (crates/tidewater-testkit/src/conformance.rs) on
//! SQLite through diesel-async's `SyncConnectionWrapper<SqliteConnection>`,
//! a database file of its own (WAL mode) for each check.
//!
//! How each failure the suite asks for is made:
//!
//! - permanent: a database in a folder that does not exist (`unable to
//!   open database file`);
//! - transient: another connection holds `BEGIN EXCLUSIVE` on the file
//!   while the manager's setup SQL must write (`database is locked` after a
//!   short `busy_timeout`), until healed;
//! - broken: an embedded database has no server to drop the connection, and
//!   diesel's `SqliteConnection` keeps working on a deleted file; what
//!   diesel-async's own pools treat as broken is a transaction manager
//!   left mid-transaction, so the check leaves one open that way;
//! - conflict: a deferred transaction whose snapshot goes stale when another
//!   connection commits (`SQLITE_BUSY_SNAPSHOT`, "database is locked").
//!
//! Session state: SQLite sessions carry pragmas; the target resets the
//! probe's (`cache_size`) with `with_reset_sql`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use diesel::{Connection, SqliteConnection};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection, TransactionManager};
use tempfile::TempDir;
use tidewater::Pool;
use tidewater_diesel::{RetryPolicy, SqliteManager, transaction};
use tidewater_testkit::conformance::{BoxError, Conn, Ending, SessionProbe, Target};

mod common;
use common::{AppError, sqlite_i64};

type Sqlite = SyncConnectionWrapper<SqliteConnection>;

tidewater_testkit::conformance!(SqliteTarget::new());

static NEXT: AtomicU64 = AtomicU64::new(0);

struct SqliteTarget {
    dir: TempDir,
    /// Connections holding a lock until healed, by token.
    holders: Mutex<HashMap<u64, SqliteConnection>>,
}

impl SqliteTarget {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary folder"),
            holders: Mutex::default(),
        }
    }

    fn path(&self) -> String {
        let name = format!("db-{}.sqlite", NEXT.fetch_add(1, SeqCst));
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    fn manager(path: &str) -> SqliteManager {
        SqliteManager::new(path)
            .unwrap()
            .with_setup_sql(["PRAGMA journal_mode = WAL"])
            .with_reset_sql(["PRAGMA cache_size = -2000"])
    }
}

impl Target for SqliteTarget {
    type Manager = SqliteManager;

    async fn fresh(&self) -> SqliteManager {
        Self::manager(&self.path())
    }

    async fn permanently_failing(&self) -> SqliteManager {
        let missing = self.dir.path().join("no-such-folder").join("db.sqlite");
        Self::manager(missing.to_str().unwrap())
    }

    async fn transiently_failing(&self) -> (SqliteManager, u64) {
        let path = self.path();
        let mut holder = SqliteConnection::establish(&path).unwrap();
        diesel::connection::SimpleConnection::batch_execute(
            &mut holder,
            "PRAGMA journal_mode = DELETE; CREATE TABLE held (x); BEGIN EXCLUSIVE",
        )
        .unwrap();
        let token = NEXT.fetch_add(1, SeqCst);
        self.holders.lock().unwrap().insert(token, holder);
        // Switching to WAL needs the exclusive lock the holder keeps.
        let manager = SqliteManager::new(path)
            .unwrap()
            .with_setup_sql(["PRAGMA busy_timeout = 10", "PRAGMA journal_mode = WAL"]);
        (manager, token)
    }

    async fn heal(&self, token: u64) {
        drop(self.holders.lock().unwrap().remove(&token));
    }

    async fn execute(conn: &mut Conn<Self>, sql: &str) -> Result<(), BoxError> {
        Ok(conn.batch_execute(sql).await?)
    }

    async fn query_i64(conn: &mut Conn<Self>, sql: &str) -> Result<i64, BoxError> {
        Ok(sqlite_i64(&mut **conn, sql).await?)
    }

    fn session_probe(&self) -> SessionProbe {
        SessionProbe {
            set: "PRAGMA cache_size = 7",
            probe: "SELECT cache_size FROM pragma_cache_size()",
            clean: -2000,
        }
    }

    async fn break_connection(&self, conn: &mut Conn<Self>) {
        let raw: &mut Sqlite = conn;
        <Sqlite as AsyncConnection>::TransactionManager::begin_transaction(raw)
            .await
            .unwrap();
    }

    tidewater_testkit::target_transactions!(insert, conflicting_increment);
}

async fn insert(pool: &Pool<SqliteManager>, id: i64, ending: Ending) -> Result<(), AppError> {
    transaction(
        pool,
        RetryPolicy::default(),
        async move |conn: &mut Sqlite| {
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

/// The first attempt reads (its snapshot starts), lets another connection
/// commit a write, then writes: `SQLITE_BUSY_SNAPSHOT`, which the helper
/// retries.
async fn conflicting_increment(pool: &Pool<SqliteManager>, id: i64) -> Result<u32, AppError> {
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let (mut entered_tx, mut go_rx) = (Some(entered_tx), Some(go_rx));
    let attempts = Arc::new(AtomicU32::new(0));
    let counted = attempts.clone();
    let increment = transaction(
        pool,
        RetryPolicy::default(),
        async move |conn: &mut Sqlite| {
            counted.fetch_add(1, SeqCst);
            let n = sqlite_i64(conn, &format!("SELECT n FROM items WHERE id = {id}")).await?;
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
        // Two commits that leave `n` as it was: SQLite writes nothing for
        // an update that changes nothing.
        for change in [100, -100] {
            conn.batch_execute(&format!(
                "UPDATE items SET n = n + {change} WHERE id = {id}"
            ))
            .await
            .unwrap();
        }
        go_tx.send(()).unwrap();
    };
    let (result, ()) = tokio::join!(increment, interfere);
    result?;
    Ok(attempts.load(SeqCst))
}
