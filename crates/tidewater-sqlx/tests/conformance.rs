//! The conformance suite (crates/tidewater-testkit/src/conformance.rs) on
//! the three databases sqlx speaks:
//!
//! | | PostgreSQL | MariaDB | SQLite |
//! |---|---|---|---|
//! | where | a private cluster, a database per check | the shared server, a database per check | a file per check in a temporary folder |
//! | permanent | wrong password (`28P01`) | wrong password (1045) | a missing file, `create_if_missing` off (`SQLITE_CANTOPEN`) |
//! | transient | a proxy refusing connections | a proxy refusing connections | another connection holds `BEGIN EXCLUSIVE` on a rollback-journal file: switching to WAL meets `SQLITE_BUSY` |
//! | broken | `pg_terminate_backend` | `KILL` | a `sqlx::Transaction` leaked with `mem::forget` (SQLite has no server to drop a session) |
//! | conflict | serialization failure (`40001`) | lock wait timeout (1205) | a stale WAL snapshot at the write (`SQLITE_BUSY_SNAPSHOT`) |

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::{ConnectOptions, Connection, MySql, Postgres, Sqlite};
use tidewater::Pool;
use tidewater_sqlx::{RetryPolicy, SessionReset, SqlxManager, transaction};
use tidewater_testkit::conformance::mariadb::{self as maria, MariaDatabases};
use tidewater_testkit::conformance::pg::{self, PgDatabases};
use tidewater_testkit::conformance::{BoxError, Conn, Ending, SessionProbe, Target};
use tokio::sync::oneshot;

mod common;
use common::AppError;

mod postgres {
    tidewater_testkit::conformance!(super::PgTarget {
        databases: super::PgDatabases::shared().await
    });
}

mod mariadb {
    tidewater_testkit::conformance!(super::MariaTarget {
        databases: super::MariaDatabases::new("sqlx_conformance")
    });
}

mod sqlite {
    tidewater_testkit::conformance!(super::SqliteTarget::new());
}

static NEXT: AtomicU64 = AtomicU64::new(0);

fn next() -> u64 {
    NEXT.fetch_add(1, SeqCst)
}

/// The `Target` methods the three targets write alike: statements on the
/// text protocol (`common`), and the transaction helper through the
/// target's own `$insert` and `$conflicting_increment`.
macro_rules! sqlx_statements {
    ($insert:ident, $conflicting_increment:ident) => {
        async fn execute(conn: &mut Conn<Self>, sql: &str) -> Result<(), BoxError> {
            Ok(common::execute(&mut **conn, sql).await?)
        }

        async fn query_i64(conn: &mut Conn<Self>, sql: &str) -> Result<i64, BoxError> {
            Ok(common::query_i64(&mut **conn, sql).await?)
        }

        tidewater_testkit::target_transactions!($insert, $conflicting_increment);
    };
}

// ---------------------------------------------------------------- PostgreSQL

/// On the binary's private cluster (`tidewater_testkit::conformance::pg`).
struct PgTarget {
    databases: PgDatabases,
}

fn pg_manager(url: String) -> SqlxManager<Postgres> {
    SqlxManager::from_url(&url)
        .unwrap()
        .with_session_reset(SessionReset::Full)
}

impl Target for PgTarget {
    type Manager = SqlxManager<Postgres>;

    // fresh, permanently_failing, transiently_failing, heal: self.databases
    tidewater_testkit::target_databases!(databases, pg_manager);

    fn session_probe(&self) -> SessionProbe {
        pg::SESSION_PROBE
    }

    async fn break_connection(&self, conn: &mut Conn<Self>) {
        let pid = common::query_i64(&mut **conn, "SELECT pg_backend_pid()")
            .await
            .unwrap();
        self.databases.terminate(pid).await;
    }

    sqlx_statements!(pg_insert, pg_conflicting_increment);
}

// The transaction helper's async closures live in free functions: inside
// the trait's methods the compiler cannot prove their futures `Send`.

macro_rules! insert {
    ($name:ident, $db:ty, $sql:literal) => {
        async fn $name(
            pool: &Pool<SqlxManager<$db>>,
            id: i64,
            ending: Ending,
        ) -> Result<(), AppError> {
            transaction(pool, RetryPolicy::default(), async move |tx| {
                sqlx::query($sql).bind(id).execute(&mut **tx).await?;
                match ending {
                    Ending::Commit => Ok(()),
                    Ending::Fail => Err(AppError::Refused),
                    Ending::Panic => panic!("the body panics mid-transaction"),
                }
            })
            .await
        }
    };
}

insert!(pg_insert, Postgres, "INSERT INTO items VALUES ($1, 1)");
insert!(maria_insert, MySql, "INSERT INTO items VALUES (?, 1)");
insert!(sqlite_insert, Sqlite, "INSERT INTO items VALUES (?, 1)");

/// The first attempt reads, lets a concurrent write commit, then writes:
/// a serialization failure the helper retries.
async fn pg_conflicting_increment(
    pool: &Pool<SqlxManager<Postgres>>,
    id: i64,
) -> Result<u32, AppError> {
    let (entered_tx, entered_rx) = oneshot::channel::<()>();
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let (mut entered_tx, mut go_rx) = (Some(entered_tx), Some(go_rx));
    let attempts = Arc::new(AtomicU32::new(0));
    let counted = attempts.clone();
    let increment = transaction(pool, RetryPolicy::default(), async move |tx| {
        counted.fetch_add(1, SeqCst);
        sqlx::query("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
            .execute(&mut **tx)
            .await?;
        let n: i64 = sqlx::query_scalar("SELECT n FROM items WHERE id = $1")
            .bind(id)
            .fetch_one(&mut **tx)
            .await?;
        if let (Some(entered), Some(go)) = (entered_tx.take(), go_rx.take()) {
            entered.send(()).unwrap();
            go.await.unwrap();
        }
        sqlx::query("UPDATE items SET n = $1 WHERE id = $2")
            .bind(n + 1)
            .bind(id)
            .execute(&mut **tx)
            .await?;
        Ok::<_, AppError>(())
    });
    let interfere = async {
        entered_rx.await.unwrap();
        let mut conn = pool.get().await.unwrap();
        sqlx::query("UPDATE items SET n = n WHERE id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await
            .unwrap();
        go_tx.send(()).unwrap();
    };
    let (result, ()) = tokio::join!(increment, interfere);
    result?;
    Ok(attempts.load(SeqCst))
}

// ------------------------------------------------------------------- MariaDB

/// On the shared server (`tidewater_testkit::conformance::mariadb`).
struct MariaTarget {
    databases: MariaDatabases,
}

/// sqlx offers no `COM_RESET_CONNECTION`: the probe's user variable is
/// cleared by the reset SQL.
fn maria_manager(url: String) -> SqlxManager<MySql> {
    SqlxManager::from_url(&url)
        .unwrap()
        .with_session_reset(SessionReset::Full)
        .with_reset_sql(["SET @flag = NULL"])
}

impl Target for MariaTarget {
    type Manager = SqlxManager<MySql>;

    // fresh, permanently_failing, transiently_failing, heal: self.databases
    tidewater_testkit::target_databases!(databases, maria_manager);

    fn session_probe(&self) -> SessionProbe {
        maria::SESSION_PROBE
    }

    async fn break_connection(&self, conn: &mut Conn<Self>) {
        let id = common::query_i64(&mut **conn, "SELECT CONNECTION_ID()")
            .await
            .unwrap();
        maria::kill(id.try_into().unwrap()).await;
    }

    sqlx_statements!(maria_insert, maria_conflicting_increment);
}

/// The first attempt's update waits for a row lock another transaction
/// holds, until the lock wait timeout (1 s for this session) ends it with
/// 1205; the helper rolls back and retries, and the second attempt lets
/// the other transaction go first.
async fn maria_conflicting_increment(
    pool: &Pool<SqlxManager<MySql>>,
    id: i64,
) -> Result<u32, AppError> {
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
        sqlx::query("SET SESSION innodb_lock_wait_timeout = 1")
            .execute(&mut **tx)
            .await?;
        sqlx::query("UPDATE items SET n = n + 1 WHERE id = ?")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        Ok::<_, AppError>(())
    });
    let hold_lock = async {
        let mut conn = pool.get().await.unwrap();
        common::execute(&mut *conn, "START TRANSACTION")
            .await
            .unwrap();
        sqlx::query("SELECT n FROM items WHERE id = ? FOR UPDATE")
            .bind(id)
            .execute(&mut *conn)
            .await
            .unwrap();
        locked_tx.send(()).unwrap();
        release_rx.await.unwrap();
        common::execute(&mut *conn, "ROLLBACK").await.unwrap();
    };
    let (result, ()) = tokio::join!(increment, hold_lock);
    result?;
    Ok(attempts.load(SeqCst))
}

// -------------------------------------------------------------------- SQLite

struct SqliteTarget {
    dir: tempfile::TempDir,
    /// Connections holding a lock until healed, by token.
    holders: Mutex<HashMap<u64, sqlx::SqliteConnection>>,
}

impl SqliteTarget {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary folder"),
            holders: Mutex::default(),
        }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join(format!("db-{}.sqlite", next()))
    }

    fn manager(options: sqlx::sqlite::SqliteConnectOptions) -> SqlxManager<Sqlite> {
        SqlxManager::new(options).with_session_reset(SessionReset::Full)
    }
}

impl Target for SqliteTarget {
    type Manager = SqlxManager<Sqlite>;

    async fn fresh(&self) -> Self::Manager {
        Self::manager(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(self.path())
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal),
        )
    }

    async fn permanently_failing(&self) -> Self::Manager {
        Self::manager(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(self.path())
                .create_if_missing(false),
        )
    }

    async fn transiently_failing(&self) -> (Self::Manager, u64) {
        let path = self.path();
        let mut holder = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Delete)
            .connect()
            .await
            .unwrap();
        common::execute(&mut holder, "CREATE TABLE t (x); BEGIN EXCLUSIVE")
            .await
            .unwrap();
        let token = next();
        self.holders.lock().unwrap().insert(token, holder);
        let manager = Self::manager(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_millis(50)),
        );
        (manager, token)
    }

    async fn heal(&self, token: u64) {
        let holder = self.holders.lock().unwrap().remove(&token);
        let mut holder = holder.expect("a holder for the token");
        common::execute(&mut holder, "ROLLBACK").await.unwrap();
        holder.close().await.unwrap();
    }

    fn session_probe(&self) -> SessionProbe {
        SessionProbe {
            set: "CREATE TEMP TABLE scratch (x)",
            probe: "SELECT count(*) FROM temp.sqlite_schema",
            clean: 0,
        }
    }

    async fn break_connection(&self, conn: &mut Conn<Self>) {
        std::mem::forget(conn.begin().await.unwrap());
    }

    sqlx_statements!(sqlite_insert, sqlite_conflicting_increment);
}

/// The first attempt reads (its WAL snapshot starts), lets another
/// connection commit a write, then writes: `SQLITE_BUSY_SNAPSHOT`, which
/// the helper retries.
async fn sqlite_conflicting_increment(
    pool: &Pool<SqlxManager<Sqlite>>,
    id: i64,
) -> Result<u32, AppError> {
    let (entered_tx, entered_rx) = oneshot::channel::<()>();
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let (mut entered_tx, mut go_rx) = (Some(entered_tx), Some(go_rx));
    let attempts = Arc::new(AtomicU32::new(0));
    let counted = attempts.clone();
    let increment = transaction(pool, RetryPolicy::default(), async move |tx| {
        counted.fetch_add(1, SeqCst);
        let n: i64 = sqlx::query_scalar("SELECT n FROM items WHERE id = ?")
            .bind(id)
            .fetch_one(&mut **tx)
            .await?;
        if let (Some(entered), Some(go)) = (entered_tx.take(), go_rx.take()) {
            entered.send(()).unwrap();
            go.await.unwrap();
        }
        sqlx::query("UPDATE items SET n = ? WHERE id = ?")
            .bind(n + 1)
            .bind(id)
            .execute(&mut **tx)
            .await?;
        Ok::<_, AppError>(())
    });
    let interfere = async {
        entered_rx.await.unwrap();
        let mut conn = pool.get().await.unwrap();
        // Two commits that leave `n` as it was: SQLite writes nothing for
        // an update that changes nothing.
        for change in [100_i64, -100] {
            sqlx::query("UPDATE items SET n = n + ? WHERE id = ?")
                .bind(change)
                .bind(id)
                .execute(&mut *conn)
                .await
                .unwrap();
        }
        go_tx.send(()).unwrap();
    };
    let (result, ()) = tokio::join!(increment, interfere);
    result?;
    Ok(attempts.load(SeqCst))
}
