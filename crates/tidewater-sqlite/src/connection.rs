//! A pooled SQLite connection: a `rusqlite::Connection` on a thread of its
//! own, driven by closures sent over a channel, so SQLite never blocks the
//! async runtime.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::types::FromSql;
use rusqlite::{Connection, InterruptHandle, Params};
use tokio::sync::oneshot;

use crate::error::SqliteError;
use crate::open::{self, FileId, Opened, Settings};

/// How long a closure may take to end after its statement was interrupted
/// before the connection is given up.
const INTERRUPT_GRACE: Duration = Duration::from_secs(1);

/// How often an idle connection checks that its database file is still the
/// one at its path.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// What the connection's thread runs: one call, then whether to go on.
type Job = Box<dyn FnOnce(&mut Worker) -> Flow + Send>;

enum Flow {
    Continue,
    Stop,
}

/// How a call on the connection's thread ended.
pub(crate) enum Outcome<R> {
    /// The closure returned.
    Done(R),
    /// The closure panicked, with this payload; the connection was closed.
    Panicked(Box<dyn Any + Send>),
    /// The closure did not run: the database file was deleted or replaced.
    Refused(SqliteError),
}

/// What the connection's thread tells the async side, lock-free.
#[derive(Debug)]
struct State {
    /// The thread is gone or must not be used again.
    broken: AtomicBool,
    /// `conn.is_autocommit()` after the last call: no transaction open.
    autocommit: AtomicBool,
    /// Calls sent but not finished (one cancelled mid-way, say).
    pending: AtomicUsize,
}

/// Marks the connection broken when its thread ends, however it ends.
struct MarkBrokenOnExit(Arc<State>);

impl Drop for MarkBrokenOnExit {
    fn drop(&mut self) {
        self.0.broken.store(true, Relaxed);
    }
}

/// An SQLite connection from the pool. Its `rusqlite::Connection` lives on
/// a thread of its own; [`interact`](Self::interact) runs a closure there
/// and awaits the result, so the async runtime's threads never wait for
/// SQLite (its locks, its disk).
///
/// Calls run one at a time, in the order they were made. A call whose
/// future is dropped still runs to its end on the connection's thread;
/// the pool then rolls back whatever transaction it left open before the
/// connection's next use.
///
/// ```no_run
/// # async fn run(pool: tidewater::Pool<tidewater_sqlite::SqliteManager>) -> Result<(), Box<dyn std::error::Error>> {
/// let conn = pool.get().await?;
/// let total: i64 = conn
///     .interact(|c| c.query_row("SELECT count(*) FROM orders WHERE paid", [], |row| row.get(0)))
///     .await??; // the connection's error, then SQLite's
/// # Ok(()) }
/// ```
pub struct SqliteConnection {
    jobs: mpsc::Sender<Job>,
    state: Arc<State>,
    interrupt: InterruptHandle,
    statement_timeout: Option<Duration>,
}

impl SqliteConnection {
    /// Opens a connection on a new thread and waits for it to be ready.
    pub(crate) async fn open(settings: Arc<Settings>) -> Result<Self, SqliteError> {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (jobs, queue) = mpsc::channel::<Job>();
        let state = Arc::new(State {
            broken: AtomicBool::new(false),
            autocommit: AtomicBool::new(true),
            pending: AtomicUsize::new(0),
        });
        let statement_timeout = settings.options.statement_timeout;
        let thread_state = state.clone();
        std::thread::Builder::new()
            .name("tidewater-sqlite".into())
            .spawn(move || {
                let _exit = MarkBrokenOnExit(thread_state.clone());
                let opened = match open::open(&settings) {
                    Ok(opened) => opened,
                    Err(error) => {
                        let _ = ready_tx.send(Err(error));
                        return;
                    }
                };
                let interrupt = opened.conn.get_interrupt_handle();
                if ready_tx.send(Ok(interrupt)).is_err() {
                    return; // the connect was cancelled: close
                }
                Worker::new(opened, settings, thread_state).serve(&queue);
            })
            .map_err(|error| SqliteError::Open {
                message: format!("cannot start a thread for an SQLite connection: {error}"),
                class: tidewater::ErrorClass::Transient,
                source: None,
            })?;
        let interrupt = ready_rx.await.map_err(|_| SqliteError::Closed)??;
        Ok(Self {
            jobs,
            state,
            interrupt,
            statement_timeout,
        })
    }

    /// Runs `f` with the connection on the connection's thread and returns
    /// what it returns.
    ///
    /// A closure that panics closes the connection (the pool replaces it)
    /// and comes back as [`SqliteError::Panicked`]. One that outlives the
    /// statement timeout is interrupted (`sqlite3_interrupt`) and comes
    /// back as [`SqliteError::Timeout`]; if it does not end within a
    /// second of that, the connection is discarded. Dropping the future
    /// does not stop the closure: it runs to its end, and a transaction it
    /// left open is rolled back before the connection's next use.
    ///
    /// # Errors
    /// [`SqliteError::Panicked`], [`SqliteError::Timeout`],
    /// [`SqliteError::Closed`] (the connection's thread is gone), or
    /// [`SqliteError::FileReplaced`] (the database file was deleted; the
    /// closure did not run). SQLite's own errors are in `R`.
    ///
    /// ```no_run
    /// # async fn run(pool: tidewater::Pool<tidewater_sqlite::SqliteManager>) -> Result<(), Box<dyn std::error::Error>> {
    /// let conn = pool.get().await?;
    /// let id = 7;
    /// let inserted = conn
    ///     .interact(move |c| c.execute("INSERT INTO orders (id) VALUES (?1)", [id]))
    ///     .await??;
    /// assert_eq!(inserted, 1);
    /// # Ok(()) }
    /// ```
    pub async fn interact<F, R>(&self, f: F) -> Result<R, SqliteError>
    where
        F: FnOnce(&mut Connection) -> R + Send + 'static,
        R: Send + 'static,
    {
        match self.call(f).await? {
            Outcome::Done(value) => Ok(value),
            Outcome::Panicked(payload) => Err(SqliteError::Panicked(panic_message(&*payload))),
            Outcome::Refused(error) => Err(error),
        }
    }

    /// Runs one or more statements separated by semicolons
    /// ([`Connection::execute_batch`]).
    ///
    /// # Errors
    /// As [`interact`](Self::interact), and SQLite's error as
    /// [`SqliteError::Sqlite`].
    ///
    /// ```no_run
    /// # async fn run(conn: &tidewater_sqlite::SqliteConnection) -> Result<(), tidewater_sqlite::SqliteError> {
    /// conn.execute_batch("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT)").await?;
    /// # Ok(()) }
    /// ```
    pub async fn execute_batch(&self, sql: impl Into<String>) -> Result<(), SqliteError> {
        let sql = sql.into();
        Ok(self.interact(move |c| c.execute_batch(&sql)).await??)
    }

    /// Runs one statement with parameters on a cached prepared statement;
    /// returns the number of rows changed.
    ///
    /// # Errors
    /// As [`execute_batch`](Self::execute_batch).
    ///
    /// ```no_run
    /// # async fn run(conn: &tidewater_sqlite::SqliteConnection) -> Result<(), tidewater_sqlite::SqliteError> {
    /// let changed = conn.execute("UPDATE kv SET v = ?1 WHERE k = ?2", ("on", "feature")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn execute<P>(&self, sql: impl Into<String>, params: P) -> Result<usize, SqliteError>
    where
        P: Params + Send + 'static,
    {
        let sql = sql.into();
        Ok(self
            .interact(move |c| c.prepare_cached(&sql)?.execute(params))
            .await??)
    }

    /// Runs a query on a cached prepared statement and returns the first
    /// column of its first row.
    ///
    /// # Errors
    /// As [`execute_batch`](Self::execute_batch); no row is
    /// `rusqlite::Error::QueryReturnedNoRows`.
    ///
    /// ```no_run
    /// # async fn run(conn: &tidewater_sqlite::SqliteConnection) -> Result<(), tidewater_sqlite::SqliteError> {
    /// let value: String = conn.query_value("SELECT v FROM kv WHERE k = ?1", ["feature"]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn query_value<T, P>(
        &self,
        sql: impl Into<String>,
        params: P,
    ) -> Result<T, SqliteError>
    where
        T: FromSql + Send + 'static,
        P: Params + Send + 'static,
    {
        let sql = sql.into();
        Ok(self
            .interact(move |c| c.prepare_cached(&sql)?.query_row(params, |row| row.get(0)))
            .await??)
    }

    /// Whether the connection is beyond use: its thread ended, a closure
    /// panicked, a statement would not stop, or its file was deleted.
    pub fn is_broken(&self) -> bool {
        self.state.broken.load(Relaxed)
    }

    /// Whether a transaction is open, as of the last finished call, or a
    /// call is still running (its future was dropped, say).
    pub fn in_transaction(&self) -> bool {
        !self.state.autocommit.load(Relaxed) || self.state.pending.load(Relaxed) > 0
    }

    /// Checks the connection with `SELECT 1` on its thread (which also
    /// checks that its database file is still there).
    pub(crate) async fn validate(&self) -> Result<(), SqliteError> {
        let one: i64 = self.query_value("SELECT 1", ()).await?;
        debug_assert_eq!(one, 1);
        Ok(())
    }

    /// Rolls back an open transaction; with `full`, also resets the session
    /// (see [`SessionReset::Full`](crate::SessionReset::Full)).
    pub(crate) async fn reset(&self, full: bool) -> Result<(), SqliteError> {
        let outcome = self
            .call_worker(move |worker| {
                let conn = worker
                    .conn
                    .as_ref()
                    .expect("calls run only on an open connection");
                if !conn.is_autocommit() {
                    conn.execute_batch("ROLLBACK")?;
                }
                if full {
                    open::reset_session(conn, &worker.settings, &worker.session)?;
                }
                Ok::<(), SqliteError>(())
            })
            .await?;
        match outcome {
            Outcome::Done(result) => result,
            Outcome::Panicked(payload) => Err(SqliteError::Panicked(panic_message(&*payload))),
            Outcome::Refused(error) => Err(error),
        }
    }

    /// Runs `f` on the connection's thread, within the statement timeout.
    pub(crate) async fn call<F, R>(&self, f: F) -> Result<Outcome<R>, SqliteError>
    where
        F: FnOnce(&mut Connection) -> R + Send + 'static,
        R: Send + 'static,
    {
        self.call_worker(move |worker| f(worker.conn())).await
    }

    async fn call_worker<F, R>(&self, f: F) -> Result<Outcome<R>, SqliteError>
    where
        F: FnOnce(&mut Worker) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (done, mut result) = oneshot::channel();
        let job: Job = Box::new(move |worker: &mut Worker| worker.run(f, done));
        self.state.pending.fetch_add(1, Relaxed);
        if self.jobs.send(job).is_err() {
            self.state.pending.fetch_sub(1, Relaxed);
            self.state.broken.store(true, Relaxed);
            return Err(SqliteError::Closed);
        }
        let Some(limit) = self.statement_timeout else {
            return result.await.map_err(|_| SqliteError::Closed);
        };
        if let Ok(outcome) = tokio::time::timeout(limit, &mut result).await {
            return outcome.map_err(|_| SqliteError::Closed);
        }
        tracing::warn!(statement_timeout = ?limit, "SQLite call outlived the statement timeout; interrupting it");
        self.interrupt.interrupt();
        let ended = matches!(
            tokio::time::timeout(INTERRUPT_GRACE, result).await,
            Ok(Ok(_))
        ) && !self.is_broken();
        if !ended {
            self.state.broken.store(true, Relaxed);
        }
        Err(SqliteError::Timeout {
            after: limit,
            connection_kept: ended,
        })
    }
}

impl std::fmt::Debug for SqliteConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteConnection")
            .field("in_transaction", &self.in_transaction())
            .field("broken", &self.is_broken())
            .finish_non_exhaustive()
    }
}

/// The text of a panic's payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// The connection's side of the thread.
struct Worker {
    /// `None` once closed (its file was deleted or replaced).
    conn: Option<Connection>,
    file: Option<(PathBuf, FileId)>,
    session: Vec<(String, String)>,
    settings: Arc<Settings>,
    state: Arc<State>,
}

impl Worker {
    fn new(opened: Opened, settings: Arc<Settings>, state: Arc<State>) -> Self {
        Self {
            conn: Some(opened.conn),
            file: opened.file,
            session: opened.session,
            settings,
            state,
        }
    }

    fn conn(&mut self) -> &mut Connection {
        self.conn
            .as_mut()
            .expect("calls run only on an open connection")
    }

    /// Runs calls in order until the connection is dropped or must close;
    /// while idle, watches its file.
    fn serve(mut self, queue: &mpsc::Receiver<Job>) {
        loop {
            let flow = match queue.recv_timeout(WATCH_INTERVAL) {
                Ok(job) => job(&mut self),
                Err(mpsc::RecvTimeoutError::Timeout) => match self.check_file() {
                    Ok(()) => Flow::Continue,
                    Err(_) => Flow::Stop,
                },
                Err(mpsc::RecvTimeoutError::Disconnected) => Flow::Stop,
            };
            if let Flow::Stop = flow {
                return;
            }
        }
    }

    /// One call: the file check, the closure (its panic caught), the state
    /// published, the result sent.
    fn run<F, R>(&mut self, f: F, done: oneshot::Sender<Outcome<R>>) -> Flow
    where
        F: FnOnce(&mut Worker) -> R,
    {
        let outcome = match self.check_file() {
            Err(error) => Outcome::Refused(error),
            Ok(()) => match catch_unwind(AssertUnwindSafe(|| f(self))) {
                Ok(value) => Outcome::Done(value),
                Err(payload) => {
                    tracing::error!(panic = %panic_message(&*payload), "a closure panicked on an SQLite connection; closing it");
                    self.state.broken.store(true, Relaxed);
                    // Closing rolls back what the closure left open.
                    self.conn = None;
                    Outcome::Panicked(payload)
                }
            },
        };
        let open = self.conn.as_ref().map(Connection::is_autocommit);
        self.state.autocommit.store(open.unwrap_or(true), Relaxed);
        self.state.pending.fetch_sub(1, Relaxed);
        let _ = done.send(outcome);
        if open.is_some() {
            Flow::Continue
        } else {
            Flow::Stop
        }
    }

    /// Whether the path still names the file this connection opened. If
    /// not, closes the connection at once: it would go on reading and
    /// writing a file nobody else sees. Closing now, not when the pool gets
    /// to it, lets SQLite checkpoint into the old file and remove the old
    /// `-wal` and `-shm` files before a connection to whatever comes next at
    /// the path could take them for its own.
    fn check_file(&mut self) -> Result<(), SqliteError> {
        let Some((path, id)) = &self.file else {
            return Ok(());
        };
        let replaced = match FileId::of(path) {
            Ok(now) if now == *id => return Ok(()),
            Ok(_) => true,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
            Err(_) => return Ok(()), // cannot tell (a permission change): keep going
        };
        tracing::warn!(
            path = %path.display(), replaced,
            "SQLite database file deleted or replaced under an open connection; closing it"
        );
        self.state.broken.store(true, Relaxed);
        self.conn = None;
        Err(SqliteError::FileReplaced {
            path: path.clone(),
            replaced,
        })
    }
}
