//! The conformance suite (crates/tidewater-testkit/src/conformance.rs) on
//! SQLite, twice: on database files (a temporary folder per check) and on
//! in-memory databases.
//!
//! How each failure the suite asks for is made, for real:
//!
//! | | file | in memory |
//! |---|---|---|
//! | permanent | a missing file with `create` off (`SQLITE_CANTOPEN`) | a pragma SQLite rejects (`encoding = 'bogus'`): nothing else about an in-memory database can fail for good |
//! | transient | another connection holds `BEGIN EXCLUSIVE` on a file in rollback-journal mode: setting WAL meets `SQLITE_BUSY` after a short `busy_timeout` | another connection of the shared cache holds `BEGIN EXCLUSIVE`: `SQLITE_LOCKED` |
//! | broken | the database file is deleted: the connection closes itself at its next call | a closure panics on the connection: its thread closes it |
//! | conflict | a deferred transaction whose snapshot goes stale when another connection commits: `SQLITE_BUSY_SNAPSHOT` at its write | another connection's read transaction holds the table lock: `SQLITE_LOCKED` at the write |

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use tempfile::TempDir;
use tidewater::Pool;
use tidewater_sqlite::{
    RetryPolicy, SessionReset, SqliteManager, SqliteOptions, transaction, transaction_with,
};
use tidewater_testkit::conformance::{BoxError, Conn, Ending, SessionProbe, Target};

mod common;
use common::AppError;

mod file {
    tidewater_testkit::conformance!(super::SqliteTarget::file());
}

mod in_memory {
    tidewater_testkit::conformance!(super::SqliteTarget::in_memory());
}

/// Makes each name unique within the test binary.
static NEXT: AtomicU64 = AtomicU64::new(0);

fn next() -> u64 {
    NEXT.fetch_add(1, SeqCst)
}

struct SqliteTarget {
    /// `Some` for databases in files: the check's own folder.
    dir: Option<TempDir>,
    /// Connections holding a lock until healed, by token.
    holders: Mutex<HashMap<u64, Connection>>,
}

impl SqliteTarget {
    fn file() -> Self {
        Self {
            dir: Some(tempfile::tempdir().expect("a temporary folder")),
            holders: Mutex::default(),
        }
    }

    fn in_memory() -> Self {
        Self {
            dir: None,
            holders: Mutex::default(),
        }
    }

    /// Options for a new database: a new file in the folder, or a new
    /// in-memory database with a known name.
    fn options(&self) -> SqliteOptions {
        let options = match &self.dir {
            Some(dir) => SqliteOptions::file(dir.path().join(format!("db-{}.sqlite", next()))),
            None => SqliteOptions {
                memory_name: Some(format!("conformance-{}-{}", std::process::id(), next())),
                ..SqliteOptions::in_memory()
            },
        };
        SqliteOptions {
            session_reset: SessionReset::Full,
            ..options
        }
    }

    fn manager(options: SqliteOptions) -> SqliteManager {
        SqliteManager::new(options).expect("valid options")
    }
}

impl Target for SqliteTarget {
    type Manager = SqliteManager;

    async fn fresh(&self) -> SqliteManager {
        Self::manager(self.options())
    }

    async fn permanently_failing(&self) -> SqliteManager {
        let options = self.options();
        Self::manager(if options.is_memory() {
            SqliteOptions {
                pragmas: vec![("encoding".into(), "'bogus'".into())],
                ..options
            }
        } else {
            SqliteOptions {
                create: false,
                ..options
            }
        })
    }

    async fn transiently_failing(&self) -> (SqliteManager, u64) {
        let options = SqliteOptions {
            busy_timeout: Duration::from_millis(50),
            ..self.options()
        };
        let manager = Self::manager(options);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI;
        let holder = Connection::open_with_flags(&*manager.location(), flags).unwrap();
        // The file stays in rollback-journal mode, where an exclusive lock
        // keeps even readers out; a shared cache needs a table to lock.
        holder
            .execute_batch("CREATE TABLE held (x); BEGIN EXCLUSIVE")
            .unwrap();
        let token = next();
        self.holders.lock().unwrap().insert(token, holder);
        (manager, token)
    }

    async fn heal(&self, token: u64) {
        let holder = self.holders.lock().unwrap().remove(&token).unwrap();
        holder.execute_batch("ROLLBACK").unwrap();
    }

    async fn execute(conn: &mut Conn<Self>, sql: &str) -> Result<(), BoxError> {
        Ok(conn.execute_batch(sql).await?)
    }

    async fn query_i64(conn: &mut Conn<Self>, sql: &str) -> Result<i64, BoxError> {
        Ok(conn.query_value(sql, ()).await?)
    }

    fn session_probe(&self) -> SessionProbe {
        SessionProbe {
            set: "CREATE TEMP TABLE scratch (x)",
            probe: "SELECT count(*) FROM temp.sqlite_schema",
            clean: 0,
        }
    }

    async fn break_connection(&self, conn: &mut Conn<Self>) {
        match &self.dir {
            // What breaks a connection to a file: the file deleted under it.
            Some(_) => {
                let path = conn
                    .query_value::<String, _>(
                        "SELECT file FROM pragma_database_list WHERE name = 'main'",
                        (),
                    )
                    .await
                    .unwrap();
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{path}{suffix}"));
                }
            }
            // In memory, nothing outside can: a closure that panics.
            None => {
                let error = conn
                    .interact(|_| panic!("conformance: breaking the connection"))
                    .await
                    .unwrap_err();
                assert!(error.to_string().contains("panicked"), "{error}");
            }
        }
    }

    async fn insert_in_transaction(
        &self,
        pool: &Pool<SqliteManager>,
        id: i64,
        ending: Ending,
    ) -> Result<(), BoxError> {
        // The body is a plain closure run on the connection's thread, so,
        // unlike an async body, it needs no free function to be `Send`.
        let inserted = transaction(pool, RetryPolicy::default(), move |tx| {
            tx.execute("INSERT INTO items VALUES (?1, 1)", [id])?;
            match ending {
                Ending::Commit => Ok(()),
                Ending::Fail => Err(AppError::refused()),
                Ending::Panic => panic!("the body panics mid-transaction"),
            }
        });
        Ok(inserted.await?)
    }

    async fn conflicting_increment(
        &self,
        pool: &Pool<SqliteManager>,
        id: i64,
    ) -> Result<u32, BoxError> {
        Ok(match &self.dir {
            Some(_) => stale_snapshot_increment(pool, id).await?,
            None => table_locked_increment(pool, id).await?,
        })
    }
}

/// On a file in WAL mode: the first attempt, a deferred transaction, reads
/// `n`; another connection then commits writes; the first attempt's write
/// cannot take the write lock on a stale snapshot (`SQLITE_BUSY_SNAPSHOT`),
/// so the helper rolls back and runs it again.
async fn stale_snapshot_increment(pool: &Pool<SqliteManager>, id: i64) -> Result<u32, AppError> {
    let attempts = Arc::new(AtomicU32::new(0));
    let counted = attempts.clone();
    let (read_tx, read_rx) = tokio::sync::oneshot::channel::<()>();
    let (written_tx, written_rx) = mpsc::channel::<()>();
    let (mut read_tx, mut written_rx) = (Some(read_tx), Some(written_rx));
    let increment = transaction_with(
        pool,
        RetryPolicy::default(),
        TransactionBehavior::Deferred,
        move |tx| {
            counted.fetch_add(1, SeqCst);
            let n: i64 = tx.query_row("SELECT n FROM items WHERE id = ?1", [id], |r| r.get(0))?;
            if let (Some(read), Some(written)) = (read_tx.take(), written_rx.take()) {
                read.send(()).unwrap();
                written.recv().unwrap(); // blocks this connection's thread only
            }
            tx.execute("UPDATE items SET n = ?1 WHERE id = ?2", [n + 1, id])?;
            Ok::<_, AppError>(())
        },
    );
    let interfere = async {
        read_rx.await.unwrap();
        let conn = pool.get().await.unwrap();
        // Two commits that leave `n` as it was: SQLite writes nothing for
        // an update that changes nothing.
        for change in [100, -100] {
            conn.execute("UPDATE items SET n = n + ?1 WHERE id = ?2", [change, id])
                .await
                .unwrap();
        }
        written_tx.send(()).unwrap();
    };
    let (result, ()) = tokio::join!(increment, interfere);
    result?;
    Ok(attempts.load(SeqCst))
}

/// In a shared cache: another connection's open read transaction holds a
/// read lock on `items`, so the first attempt's write meets
/// `SQLITE_LOCKED`; that connection then commits, and the helper's next
/// attempt goes through.
async fn table_locked_increment(pool: &Pool<SqliteManager>, id: i64) -> Result<u32, AppError> {
    let reader = pool.get().await?;
    reader.execute_batch("BEGIN; SELECT n FROM items; ").await?;
    reader
        .interact(move |c| {
            // Keep a statement on `items` stepped, so its lock is held.
            c.query_row("SELECT n FROM items WHERE id = ?1", [id], |r| {
                r.get::<_, i64>(0)
            })
        })
        .await??;
    let attempts = Arc::new(AtomicU32::new(0));
    let counted = attempts.clone();
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<()>();
    let (released_tx, released_rx) = mpsc::channel::<()>();
    let (mut failed_tx, mut released_rx) = (Some(failed_tx), Some(released_rx));
    let increment = transaction(pool, RetryPolicy::default(), move |tx| {
        counted.fetch_add(1, SeqCst);
        if failed_tx.is_none()
            && let Some(released) = released_rx.take()
        {
            released.recv().unwrap(); // the reader is done
        }
        let n: i64 = tx.query_row("SELECT n FROM items WHERE id = ?1", [id], |r| r.get(0))?;
        let written = tx.execute("UPDATE items SET n = ?1 WHERE id = ?2", [n + 1, id]);
        if let Some(failed) = failed_tx.take() {
            failed.send(()).unwrap();
        }
        written?;
        Ok::<_, AppError>(())
    });
    let release = async {
        failed_rx.await.unwrap();
        reader.execute_batch("COMMIT").await.unwrap();
        released_tx.send(()).unwrap();
    };
    let (result, ()) = tokio::join!(increment, release);
    result?;
    Ok(attempts.load(SeqCst))
}
