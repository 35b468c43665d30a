//! A pooled MySQL session: the driver's `Conn`, what the server's last
//! answer says about its state, and queries bounded by the statement
//! timeout.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use mysql_async::consts::StatusFlags;
use mysql_async::prelude::{AsQuery, FromRow, Queryable, StatementLike};
use mysql_async::{Conn, Params};

use crate::error::{MARIADB_STATEMENT_TIMEOUT, MYSQL_STATEMENT_TIMEOUT, MySqlError};
use crate::manager::Shared;

/// After the client-side deadline: how long the `KILL QUERY` (connecting a
/// second session included) and the query's end may take before the
/// connection is given up.
const KILL_GRACE: Duration = Duration::from_secs(3);

/// Where the server enforces the statement timeout itself, the client
/// waits this much longer, so that the server's own, cheaper stop comes
/// first.
const SERVER_FIRST: Duration = Duration::from_millis(500);

/// The longest a bounded query can take under statement timeout `limit`:
/// the server's head start, then the `KILL QUERY` grace.
pub(crate) fn query_bound(limit: Duration) -> Duration {
    limit + SERVER_FIRST + KILL_GRACE
}

/// `ER_UNKNOWN_SYSTEM_VARIABLE`.
const UNKNOWN_SYSTEM_VARIABLE: u16 = 1193;

/// What the server's last answer on a session says about its state. Read
/// from the status flags of the last OK packet, so it costs nothing.
///
/// Its limit: rows of a result left unread (a `QueryResult` dropped before
/// its end) hide the statements behind them in a multi-statement query;
/// [`SessionReset::ResetConnection`](crate::SessionReset::ResetConnection)
/// covers that case too.
///
/// ```
/// use tidewater_mysql::SessionStatus;
/// assert!(SessionStatus::Idle.is_clean());
/// assert!(!SessionStatus::Unknown.is_clean());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// No transaction open, autocommit on, nothing pending.
    Idle,
    /// A transaction is open (`SERVER_STATUS_IN_TRANS`).
    InTransaction,
    /// Autocommit was switched off: every statement opens a transaction.
    AutocommitOff,
    /// The last answer was an error (which does not end a transaction),
    /// or more results are pending: a transaction may be open.
    Unknown,
}

impl SessionStatus {
    /// Whether the next user can take the session as it is.
    pub fn is_clean(self) -> bool {
        self == Self::Idle
    }

    fn of(flags: Option<StatusFlags>) -> Self {
        match flags {
            None => Self::Unknown,
            Some(flags) if flags.contains(StatusFlags::SERVER_MORE_RESULTS_EXISTS) => Self::Unknown,
            Some(flags) if !flags.contains(StatusFlags::SERVER_STATUS_AUTOCOMMIT) => {
                Self::AutocommitOff
            }
            Some(flags) if flags.contains(StatusFlags::SERVER_STATUS_IN_TRANS) => {
                Self::InTransaction
            }
            Some(_) => Self::Idle,
        }
    }
}

/// Which statements the server stops by itself at the statement timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServerTimer {
    /// None: the client's `KILL QUERY` is the only bound.
    Off,
    /// MySQL's `max_execution_time`: read-only `SELECT`s.
    Selects,
    /// MariaDB's `max_statement_time`: every statement.
    All,
}

/// A MySQL or MariaDB session from the pool. Derefs to
/// [`mysql_async::Conn`]; its own query methods (same names as
/// [`Queryable`]'s) are bounded by the statement timeout on the client too,
/// and a query cancelled half-way (its future dropped) gets its connection
/// closed rather than reused. Through the driver directly only the
/// server's own timer applies.
///
/// ```no_run
/// # async fn run(pool: tidewater::Pool<tidewater_mysql::MySqlManager>) -> Result<(), Box<dyn std::error::Error>> {
/// let mut conn = pool.get().await?;
/// let answer: Option<i64> = conn.exec_first("SELECT ? + 1", (41,)).await?; // stopped if it hangs
/// assert_eq!(answer, Some(42));
/// # Ok(())
/// # }
/// ```
pub struct MySqlConnection {
    conn: Conn,
    shared: Arc<Shared>,
    timer: ServerTimer,
    /// Set when a killed query did not stop: the pool discards it.
    broken: bool,
    /// Set while a bounded query runs.
    in_flight: bool,
    /// Set while the transaction helper runs a transaction: if its future
    /// is dropped half-way, the pool closes the connection, which ends the
    /// transaction (and frees its locks) on the server at once.
    in_helper_transaction: bool,
}

impl MySqlConnection {
    /// Wraps a new session and applies its session settings.
    pub(crate) async fn open(conn: Conn, shared: Arc<Shared>) -> Result<Self, MySqlError> {
        let mut conn = Self {
            conn,
            shared,
            timer: ServerTimer::Off,
            broken: false,
            in_flight: false,
            in_helper_transaction: false,
        };
        conn.apply_session_settings().await?;
        Ok(conn)
    }

    /// Sets the server's own statement timer for this session, then runs
    /// the setup statements
    /// ([`MySqlOptions::setup_sql`](crate::MySqlOptions::setup_sql)) in
    /// order; a failing one is a [`MySqlError::Setup`] naming it.
    async fn apply_session_settings(&mut self) -> Result<(), MySqlError> {
        self.apply_statement_timeout().await?;
        let shared = self.shared.clone();
        for statement in &shared.setup_sql {
            self.conn
                .query_drop(statement.as_str())
                .await
                .map_err(|error| MySqlError::Setup {
                    statement: statement.clone(),
                    source: Box::new(error.into()),
                })?;
        }
        Ok(())
    }

    /// Sets the server's own statement timer for this session, if there is
    /// one: MariaDB (the servers reporting version 10 and up; from 10.1)
    /// has `max_statement_time`, MySQL from 5.7.8 `max_execution_time`. A
    /// server that knows neither (`1193`, unknown variable) leaves the
    /// client's `KILL QUERY` as the only bound.
    async fn apply_statement_timeout(&mut self) -> Result<(), MySqlError> {
        let Some(limit) = self.shared.statement_timeout else {
            return Ok(());
        };
        let version = self.conn.server_version();
        let (timer, sql) = if version.0 >= 10 {
            let seconds = limit.as_secs_f64();
            (
                ServerTimer::All,
                format!("SET SESSION max_statement_time = {seconds:.6}"),
            )
        } else if version >= (5, 7, 8) {
            let millis = limit.as_millis().max(1);
            (
                ServerTimer::Selects,
                format!("SET SESSION max_execution_time = {millis}"),
            )
        } else {
            return Ok(());
        };
        self.timer = match self.conn.query_drop(sql).await {
            Ok(()) => timer,
            Err(mysql_async::Error::Server(error)) if error.code == UNKNOWN_SYSTEM_VARIABLE => {
                ServerTimer::Off
            }
            Err(error) => return Err(error.into()),
        };
        Ok(())
    }

    /// `COM_RESET_CONNECTION` (or `ROLLBACK` on servers without it: MySQL
    /// before 5.7.3, MariaDB before 10.2.4), then the session settings
    /// (statement timeout, setup statements) again.
    pub(crate) async fn reset_session(&mut self) -> Result<(), MySqlError> {
        if !self.conn.reset().await? {
            self.conn.query_drop("ROLLBACK").await?;
        }
        self.apply_session_settings().await
    }

    /// The server's thread id for this session, as in `SHOW PROCESSLIST`
    /// and `KILL`.
    pub fn connection_id(&self) -> u32 {
        self.conn.id()
    }

    /// The session's state, as of the server's last answer.
    pub fn session_status(&self) -> SessionStatus {
        SessionStatus::of(self.conn.last_ok_packet().map(|ok| ok.status_flags()))
    }

    /// Whether the session can no longer be used.
    pub fn is_broken(&self) -> bool {
        self.broken || self.in_flight || self.in_helper_transaction || self.conn.is_disconnected()
    }

    pub(crate) fn set_in_helper_transaction(&mut self, on: bool) {
        self.in_helper_transaction = on;
    }

    /// Runs `query` (a future on this session) within the statement
    /// timeout. When the server does not stop it in time itself, a
    /// `KILL QUERY` from a second connection does, and the session stays
    /// usable; if the statement has not ended a few seconds later (a hung
    /// server, a broken network) the session is marked broken and the pool
    /// discards it.
    ///
    /// # Errors
    /// [`MySqlError::QueryTimeout`], or the query's own error.
    ///
    /// ```no_run
    /// # async fn run(mut conn: tidewater::PooledConnection<tidewater_mysql::MySqlManager>) -> Result<(), tidewater_mysql::MySqlError> {
    /// use mysql_async::prelude::Queryable;
    /// let rows = vec![(1, "a"), (2, "b")];
    /// conn.bounded(|conn| conn.exec_batch("INSERT INTO t VALUES (?, ?)", rows)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn bounded<'a, T, F>(
        &'a mut self,
        query: impl FnOnce(&'a mut Conn) -> F,
    ) -> Result<T, MySqlError>
    where
        F: Future<Output = Result<T, mysql_async::Error>> + Send + 'a,
    {
        let Self {
            conn,
            shared,
            timer,
            broken,
            in_flight,
            ..
        } = self;
        let id = conn.id();
        // Dropped before the end (its caller cancelled), the query leaves
        // the session at an unknown point: the flag stays, and the pool
        // closes the connection.
        *in_flight = true;
        let result = within_timeout(query(conn), id, shared, *timer, broken).await;
        *in_flight = false;
        result
    }

    /// Bounded [`Queryable::query`]: every row of the first result.
    ///
    /// # Errors
    /// As [`bounded`](Self::bounded).
    pub async fn query<'a, T, Q>(&'a mut self, query: Q) -> Result<Vec<T>, MySqlError>
    where
        Q: AsQuery + 'a,
        T: FromRow + Send + 'static,
    {
        self.bounded(|conn| conn.query(query)).await
    }

    /// Bounded [`Queryable::query_first`]: the first row, if any.
    ///
    /// # Errors
    /// As [`bounded`](Self::bounded).
    pub async fn query_first<'a, T, Q>(&'a mut self, query: Q) -> Result<Option<T>, MySqlError>
    where
        Q: AsQuery + 'a,
        T: FromRow + Send + 'static,
    {
        self.bounded(|conn| conn.query_first(query)).await
    }

    /// Bounded [`Queryable::query_drop`]: runs statements, drops results.
    ///
    /// # Errors
    /// As [`bounded`](Self::bounded).
    pub async fn query_drop<'a, Q>(&'a mut self, query: Q) -> Result<(), MySqlError>
    where
        Q: AsQuery + 'a,
    {
        self.bounded(|conn| conn.query_drop(query)).await
    }

    /// Bounded [`Queryable::exec`]: a prepared statement (prepared once per
    /// session and cached by the driver), every row of its result.
    ///
    /// # Errors
    /// As [`bounded`](Self::bounded).
    pub async fn exec<'a, T, S, P>(
        &'a mut self,
        statement: S,
        params: P,
    ) -> Result<Vec<T>, MySqlError>
    where
        S: StatementLike + 'a,
        P: Into<Params> + Send + 'a,
        T: FromRow + Send + 'static,
    {
        self.bounded(|conn| conn.exec(statement, params)).await
    }

    /// Bounded [`Queryable::exec_first`].
    ///
    /// # Errors
    /// As [`bounded`](Self::bounded).
    pub async fn exec_first<'a, T, S, P>(
        &'a mut self,
        statement: S,
        params: P,
    ) -> Result<Option<T>, MySqlError>
    where
        S: StatementLike + 'a,
        P: Into<Params> + Send + 'a,
        T: FromRow + Send + 'static,
    {
        self.bounded(|conn| conn.exec_first(statement, params))
            .await
    }

    /// Bounded [`Queryable::exec_drop`].
    ///
    /// # Errors
    /// As [`bounded`](Self::bounded).
    pub async fn exec_drop<'a, S, P>(
        &'a mut self,
        statement: S,
        params: P,
    ) -> Result<(), MySqlError>
    where
        S: StatementLike + 'a,
        P: Into<Params> + Send + 'a,
    {
        self.bounded(|conn| conn.exec_drop(statement, params)).await
    }
}

/// Runs `query`, on session `id`, within the statement timeout: see
/// [`MySqlConnection::bounded`]. Sets `broken` when it had to give up on
/// the session.
async fn within_timeout<T>(
    query: impl Future<Output = Result<T, mysql_async::Error>>,
    id: u32,
    shared: &Shared,
    timer: ServerTimer,
    broken: &mut bool,
) -> Result<T, MySqlError> {
    let Some(limit) = shared.statement_timeout else {
        return Ok(query.await?);
    };
    let timed_out = |kept| MySqlError::QueryTimeout {
        after: limit,
        connection_kept: kept,
    };
    let patience = match timer {
        ServerTimer::All => limit + SERVER_FIRST,
        ServerTimer::Selects | ServerTimer::Off => limit,
    };
    let mut query = std::pin::pin!(query);
    match tokio::time::timeout(patience, query.as_mut()).await {
        Ok(Err(mysql_async::Error::Server(error)))
            if timer != ServerTimer::Off
                && matches!(
                    error.code,
                    MARIADB_STATEMENT_TIMEOUT | MYSQL_STATEMENT_TIMEOUT
                ) =>
        {
            return Err(timed_out(true));
        }
        Ok(result) => return Ok(result?),
        Err(_) => {}
    }
    tracing::warn!(statement_timeout = ?limit, connection_id = id, "query outlived the statement timeout; killing it");
    let stopped = tokio::time::timeout(KILL_GRACE, async {
        if let Err(error) = kill_query(shared, id).await {
            tracing::warn!(%error, "KILL QUERY failed");
            return false;
        }
        // Ends with 1317 (query interrupted), or cut short.
        let _ = query.await;
        true
    })
    .await;
    let kept = stopped == Ok(true);
    *broken |= !kept;
    Err(timed_out(kept))
}

/// `KILL QUERY id` from a new connection with the manager's settings.
async fn kill_query(shared: &Shared, id: u32) -> Result<(), MySqlError> {
    let mut killer = shared.open().await?;
    killer.query_drop(format!("KILL QUERY {id}")).await?;
    killer.disconnect().await?;
    Ok(())
}

impl Deref for MySqlConnection {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl DerefMut for MySqlConnection {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

/// Shows the session's id and state; never the driver's settings (they
/// hold the password).
impl std::fmt::Debug for MySqlConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySqlConnection")
            .field("connection_id", &self.conn.id())
            .field("session_status", &self.session_status())
            .field("broken", &self.is_broken())
            .finish_non_exhaustive()
    }
}
