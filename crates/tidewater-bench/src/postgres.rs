//! `tidewater-bench postgres`: the same workload on tidewater-postgres and
//! on its peers against a real PostgreSQL server, one JSON object a line.
//!
//! 1000 tasks share a pool of 50 connections; each task does its share of
//! the operations, one after another: take a connection (timed: the
//! acquire wait), run `SELECT 1`, give the connection back. The contenders:
//!
//! - `tidewater`: `tidewater::Pool<PgManager>` with its defaults but
//!   `max_size`, the query through [`PgConnection::query`], which bounds it
//!   by the statement timeout (what users call);
//! - `tidewater-client`: the same pool, the query straight on the driver's
//!   `Client` ([`PgConnection::client`]), to see what the bound costs;
//! - `deadpool`: deadpool-postgres with `RecyclingMethod::Fast`;
//! - `bb8`: bb8-postgres with `test_on_check_out(false)`;
//! - `sqlx`: sqlx's `PgPool` with `test_before_acquire(false)`;
//! - `tidewater-sqlx`: `tidewater::Pool<SqlxManager<Postgres>>` with its
//!   defaults but `max_size`, the same sqlx call as `sqlx` on the sqlx
//!   connection it derefs to (its reset before each reuse included);
//!   `tidewater-sqlx-tracked` the same with `SessionReset::Tracked` (no
//!   reset round trip);
//! - `tidewater-diesel`, `diesel-deadpool`, `diesel-bb8`: diesel-async's
//!   `AsyncPgConnection` in tidewater-diesel and in diesel-async's own
//!   deadpool and bb8 adapters, `SELECT 1` through diesel (see
//!   `postgres_diesel.rs`);
//! - `ceiling`: no pool. 50 dedicated `tokio_postgres::Client`s, task `i`
//!   always on client `i % 50`. A `Client` is shared by reference and
//!   pipelines the requests of its 20 tasks on its one socket, so this is a
//!   pipelining ceiling, not a pool.
//!
//! Every tokio-postgres-based contender runs the same call: with
//! [`Statement::Query`] (the default) `query("SELECT 1", &[])`, which
//! prepares a named statement, runs it and closes it (two round trips;
//! the close is not waited for); with [`Statement::Typed`]
//! `query_typed("SELECT 1", &[])`, one round trip on the unnamed
//! statement. sqlx and tidewater-sqlx run `sqlx::query("SELECT 1").execute(..)` in both: it
//! prepares the statement once per connection and keeps it, so each
//! operation is one round trip.
//!
//! Each run opens a fresh pool, takes its 50 connections at once, runs
//! `SELECT 1` on each (so sqlx's statement cache is warm) and gives them
//! back; only then are the tasks released together. After the run the pool
//! is closed and the benchmark waits until the server has no connection of
//! it left before the next contender starts, so at most 50 connections
//! (and one to watch the server) are open at any time. Runs alternate
//! between contenders, so that a slow phase of the machine or the shared
//! server does not land on one contender only.
//!
//! ```text
//! cargo run --release -p tidewater-bench -- postgres --quick
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use hdrhistogram::Histogram;
use serde::Serialize;
use tidewater_postgres::tokio_postgres::{self, Client, NoTls};
use tidewater_postgres::{PgConnection, PgManager, PgOptions};
use tokio::sync::Barrier;
use tokio::task::JoinHandle;

use crate::{ACQUIRE_TIMEOUT, median, micros_at, print, wait_histogram};

#[path = "postgres_diesel.rs"]
mod diesel_contenders;

/// The shared test server.
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// `application_name` of the contenders' connections: how the benchmark
/// finds them on the server.
const APP: &str = "tidewater-bench";
/// `application_name` of the one connection that watches the server.
const MONITOR_APP: &str = "tidewater-bench-monitor";
/// Connections of each pool (and dedicated connections of the ceiling).
const POOL_SIZE: u32 = 50;
/// Concurrent tasks.
const TASKS: u32 = 1000;
/// The query every operation runs.
const SQL: &str = "SELECT 1";
/// Connection slots left free on the server for its other users.
const HEADROOM: i64 = 3;
/// How long a closed pool's connections may take to leave the server.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Error of a contender, of the server, or of the benchmark itself.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Compares tidewater-postgres with deadpool-postgres, bb8-postgres, sqlx
/// and 50 dedicated connections on a PostgreSQL server.
#[derive(clap::Args, Debug)]
pub(crate) struct PgArgs {
    /// The server, as a `postgres://` URL. The benchmark adds
    /// `application_name=tidewater-bench`, and needs 51 free connection
    /// slots (and 3 more left for others).
    #[arg(long, default_value = DEFAULT_URL)]
    url: String,
    /// Operations a run (default 200 000, or 5 000 with `--quick`).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    ops: Option<u64>,
    /// A smoke run: 5 000 operations, one run unless `--runs` says
    /// otherwise.
    #[arg(long)]
    quick: bool,
    /// Runs of each contender (default 3, or 1 with `--quick`); the output
    /// is their median throughput and the wait percentiles of all of them.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    runs: Option<u32>,
    /// The contenders to run, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pools: Vec<PgKind>,
    /// The call the tokio-postgres-based contenders make.
    #[arg(long, value_enum, default_value_t = Statement::Query)]
    statement: Statement,
}

/// A contender; its name on the command line and in the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum PgKind {
    /// tidewater-postgres, queries through `PgConnection::query`.
    Tidewater,
    /// tidewater-postgres, queries through `PgConnection::client().query`.
    TidewaterClient,
    /// deadpool-postgres.
    Deadpool,
    /// bb8-postgres.
    Bb8,
    /// sqlx's `PgPool`.
    Sqlx,
    /// tidewater-sqlx: sqlx's `PgConnection` in a tidewater pool.
    TidewaterSqlx,
    /// tidewater-sqlx with `SessionReset::Tracked`: no reset round trip.
    TidewaterSqlxTracked,
    /// tidewater-diesel: diesel-async's `AsyncPgConnection` in tidewater.
    TidewaterDiesel,
    /// diesel-async's deadpool adapter.
    DieselDeadpool,
    /// diesel-async's bb8 adapter.
    DieselBb8,
    /// 50 dedicated connections, no pool.
    Ceiling,
}

/// How the tokio-postgres-based contenders run `SELECT 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Statement {
    /// `query("SELECT 1", &[])`: prepare a named statement, run it, close
    /// it; two round trips.
    Query,
    /// `query_typed("SELECT 1", &[])`: the unnamed statement, one round
    /// trip.
    Typed,
}

impl PgKind {
    /// Runs `load` once on a fresh contender of this kind.
    async fn measure(self, load: &Load, monitor: &Monitor) -> Result<Run, BoxError> {
        match self {
            Self::Tidewater => measure::<Tidewater<true>>(load, monitor).await,
            Self::TidewaterClient => measure::<Tidewater<false>>(load, monitor).await,
            Self::Deadpool => measure::<deadpool_postgres::Pool>(load, monitor).await,
            Self::Bb8 => measure::<Bb8>(load, monitor).await,
            Self::Sqlx => measure::<sqlx::PgPool>(load, monitor).await,
            Self::TidewaterSqlx => measure::<TidewaterSqlx<false>>(load, monitor).await,
            Self::TidewaterSqlxTracked => measure::<TidewaterSqlx<true>>(load, monitor).await,
            Self::TidewaterDiesel => {
                measure::<diesel_contenders::TidewaterDiesel>(load, monitor).await
            }
            Self::DieselDeadpool => {
                measure::<diesel_contenders::DieselDeadpool>(load, monitor).await
            }
            Self::DieselBb8 => measure::<diesel_contenders::DieselBb8>(load, monitor).await,
            Self::Ceiling => measure::<Ceiling>(load, monitor).await,
        }
    }
}

/// One run's workload.
#[derive(Debug)]
struct Load {
    /// Where the contenders connect, `application_name` included.
    url: String,
    /// The same, parsed, for the contenders that take a driver `Config`.
    config: tokio_postgres::Config,
    /// Operations in all, split evenly over [`TASKS`] tasks.
    ops: u64,
    /// The call of the tokio-postgres-based contenders.
    statement: Statement,
}

/// What one run measured.
struct Run {
    /// From the tasks' start to the last one's end.
    elapsed: Duration,
    /// Each get's wait in nanoseconds, when the contender has gets.
    waits: Option<Histogram<u64>>,
    /// Connections of the contender the server had when the tasks ended.
    connections: i64,
}

/// A contender as the benchmark drives it: opened with its fair settings,
/// asked for a connection, made to run `SELECT 1` on it, closed.
trait Contender: Send + Sync + Sized + 'static {
    /// A connection out of the contender; dropping it gives it back.
    type Conn<'a>: Send
    where
        Self: 'a;

    /// Whether getting a connection can wait (false for the ceiling, whose
    /// tasks own theirs): only then are waits recorded.
    const WAITS: bool = true;

    /// A contender of at most [`POOL_SIZE`] connections.
    fn open(load: &Load) -> impl Future<Output = Result<Self, BoxError>> + Send;

    /// A connection for task number `task`, waiting for one if needed.
    fn get(&self, task: u32) -> impl Future<Output = Result<Self::Conn<'_>, BoxError>> + Send;

    /// Runs `SELECT 1` on `conn`.
    fn select_one(
        conn: &mut Self::Conn<'_>,
        statement: Statement,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Closes every connection (the caller then waits for the server to
    /// see them go).
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// Runs `SELECT 1` on a driver client, the way `statement` says.
async fn select_on(client: &Client, statement: Statement) -> Result<(), BoxError> {
    let rows = match statement {
        Statement::Query => client.query(SQL, &[]).await?,
        Statement::Typed => client.query_typed(SQL, &[]).await?,
    };
    one_row(rows.len())
}

/// Checks that `SELECT 1` answered one row.
fn one_row(rows: usize) -> Result<(), BoxError> {
    if rows == 1 {
        Ok(())
    } else {
        Err(format!("SELECT 1 returned {rows} rows").into())
    }
}

/// tidewater-postgres; `BOUNDED`: queries through [`PgConnection`]'s
/// bounded methods, else straight on its driver `Client`.
struct Tidewater<const BOUNDED: bool>(tidewater::Pool<PgManager>);

impl<const BOUNDED: bool> Contender for Tidewater<BOUNDED> {
    type Conn<'a> = tidewater::PooledConnection<PgManager>;

    async fn open(load: &Load) -> Result<Self, BoxError> {
        // Defaults but the size: acquire_timeout 30 s, statement_timeout
        // 30 s, reset = roll back only a transaction left open, validate
        // only connections idle over 500 ms (none while timing), leak
        // tracking and statistics on.
        let options = PgOptions {
            url: load.url.clone(),
            ..Default::default()
        };
        let config = tidewater::PoolConfig {
            max_size: POOL_SIZE,
            ..Default::default()
        };
        Ok(Self(tidewater::Pool::new(
            PgManager::new(options)?,
            config,
        )?))
    }

    async fn get(&self, _task: u32) -> Result<Self::Conn<'_>, BoxError> {
        Ok(self.0.get().await?)
    }

    async fn select_one(conn: &mut Self::Conn<'_>, statement: Statement) -> Result<(), BoxError> {
        let conn: &PgConnection = conn;
        if !BOUNDED {
            return select_on(conn.client(), statement).await;
        }
        let rows = match statement {
            Statement::Query => conn.query(SQL, &[]).await?,
            Statement::Typed => conn.query_typed(SQL, &[]).await?,
        };
        one_row(rows.len())
    }

    async fn close(self) {
        self.0.close().await;
    }
}

impl Contender for deadpool_postgres::Pool {
    type Conn<'a> = deadpool_postgres::Object;

    async fn open(load: &Load) -> Result<Self, BoxError> {
        // `RecyclingMethod::Fast`: a checkout only asks the client whether
        // its socket is closed (`Verified`, the other common choice, runs
        // an empty query on every checkout). `wait_timeout` bounds the
        // wait for a connection, like the others' acquire timeout.
        let manager = deadpool_postgres::Manager::from_config(
            load.config.clone(),
            NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        Ok(deadpool_postgres::Pool::builder(manager)
            .max_size(POOL_SIZE as usize)
            .wait_timeout(Some(ACQUIRE_TIMEOUT))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()?)
    }

    async fn get(&self, _task: u32) -> Result<Self::Conn<'_>, BoxError> {
        Ok(deadpool_postgres::Pool::get(self).await?)
    }

    async fn select_one(conn: &mut Self::Conn<'_>, statement: Statement) -> Result<(), BoxError> {
        // Derefs to `tokio_postgres::Client` (deadpool's `prepare_cached`
        // is not used: the call is the same for every contender).
        select_on(conn, statement).await
    }

    async fn close(self) {
        deadpool_postgres::Pool::close(&self);
    }
}

/// bb8-postgres.
type Bb8 = bb8::Pool<bb8_postgres::PostgresConnectionManager<NoTls>>;

impl Contender for Bb8 {
    type Conn<'a> = bb8::PooledConnection<'a, bb8_postgres::PostgresConnectionManager<NoTls>>;

    async fn open(load: &Load) -> Result<Self, BoxError> {
        // `test_on_check_out(false)`: bb8 otherwise runs an empty query on
        // every checkout. `connection_timeout` bounds `get()`.
        let manager = bb8_postgres::PostgresConnectionManager::new(load.config.clone(), NoTls);
        Ok(bb8::Pool::builder()
            .max_size(POOL_SIZE)
            .test_on_check_out(false)
            .connection_timeout(ACQUIRE_TIMEOUT)
            .build(manager)
            .await?)
    }

    async fn get(&self, _task: u32) -> Result<Self::Conn<'_>, BoxError> {
        Ok(Bb8::get(self).await?)
    }

    async fn select_one(conn: &mut Self::Conn<'_>, statement: Statement) -> Result<(), BoxError> {
        select_on(conn, statement).await
    }

    async fn close(self) {
        // bb8 has no close: dropping the last handle closes the idle
        // connections.
        drop(self);
    }
}

impl Contender for sqlx::PgPool {
    type Conn<'a> = sqlx::pool::PoolConnection<sqlx::Postgres>;

    async fn open(load: &Load) -> Result<Self, BoxError> {
        // `test_before_acquire(false)`: sqlx otherwise pings every
        // connection it hands out. `connect_lazy`: no connection until the
        // warm-up asks. Statements are prepared once per connection and
        // cached (sqlx's default, 100 a connection).
        Ok(sqlx::postgres::PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .test_before_acquire(false)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy(&load.url)?)
    }

    async fn get(&self, _task: u32) -> Result<Self::Conn<'_>, BoxError> {
        Ok(self.acquire().await?)
    }

    async fn select_one(conn: &mut Self::Conn<'_>, _statement: Statement) -> Result<(), BoxError> {
        // `SELECT 1` returns one row and affects none.
        sqlx::query(SQL).execute(&mut **conn).await?;
        Ok(())
    }

    async fn close(self) {
        sqlx::PgPool::close(&self).await;
    }
}

/// tidewater-sqlx: sqlx's `PgConnection` pooled by tidewater.
struct TidewaterSqlx<const TRACKED: bool>(
    tidewater::Pool<tidewater_sqlx::SqlxManager<sqlx::Postgres>>,
);

impl<const TRACKED: bool> Contender for TidewaterSqlx<TRACKED> {
    type Conn<'a> = tidewater::PooledConnection<tidewater_sqlx::SqlxManager<sqlx::Postgres>>;

    async fn open(load: &Load) -> Result<Self, BoxError> {
        // Defaults but the size, as for `tidewater`: a used connection is
        // reset (one round trip) before its next checkout, or with
        // `TRACKED` only what sqlx tracks itself is cleared (no round
        // trip). Statements are prepared once per connection and cached,
        // as in `sqlx`.
        let config = tidewater::PoolConfig {
            max_size: POOL_SIZE,
            ..Default::default()
        };
        let reset = if TRACKED {
            tidewater_sqlx::SessionReset::Tracked
        } else {
            tidewater_sqlx::SessionReset::Rollback
        };
        let manager = tidewater_sqlx::SqlxManager::from_url(&load.url)?.with_session_reset(reset);
        Ok(Self(manager.into_pool(config)?))
    }

    async fn get(&self, _task: u32) -> Result<Self::Conn<'_>, BoxError> {
        Ok(self.0.get().await?)
    }

    async fn select_one(conn: &mut Self::Conn<'_>, _statement: Statement) -> Result<(), BoxError> {
        // The same call as `sqlx`'s, on the sqlx connection the pooled
        // connection derefs to.
        sqlx::query(SQL).execute(&mut **conn).await?;
        Ok(())
    }

    async fn close(self) {
        self.0.close().await;
    }
}

/// No pool: [`POOL_SIZE`] dedicated connections, task `i` always on
/// connection `i % POOL_SIZE`, up to 20 tasks pipelining on each.
struct Ceiling {
    /// The connections.
    clients: Vec<Client>,
    /// Their drivers' tasks, which end when their client is dropped.
    drivers: Vec<JoinHandle<()>>,
}

impl Contender for Ceiling {
    type Conn<'a> = &'a Client;

    const WAITS: bool = false;

    async fn open(load: &Load) -> Result<Self, BoxError> {
        let mut ceiling = Self {
            clients: Vec::new(),
            drivers: Vec::new(),
        };
        for _ in 0..POOL_SIZE {
            let (client, driver) = connect(&load.config).await?;
            ceiling.clients.push(client);
            ceiling.drivers.push(driver);
        }
        Ok(ceiling)
    }

    async fn get(&self, task: u32) -> Result<Self::Conn<'_>, BoxError> {
        Ok(&self.clients[(task % POOL_SIZE) as usize])
    }

    async fn select_one(conn: &mut Self::Conn<'_>, statement: Statement) -> Result<(), BoxError> {
        select_on(conn, statement).await
    }

    async fn close(self) {
        drop(self.clients);
        for driver in self.drivers {
            let _ = driver.await;
        }
    }
}

/// A plain tokio-postgres connection and its driver's task.
async fn connect(config: &tokio_postgres::Config) -> Result<(Client, JoinHandle<()>), BoxError> {
    let (client, connection) = config.connect(NoTls).await?;
    let driver = tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("tidewater-bench: a dedicated connection failed: {error}");
        }
    });
    Ok((client, driver))
}

/// Runs `load` once on a fresh contender of type `C`, and closes it.
async fn measure<C: Contender>(load: &Load, monitor: &Monitor) -> Result<Run, BoxError> {
    let contender = Arc::new(C::open(load).await?);
    let result = time::<C>(&contender, load, monitor).await;
    let contender = Arc::into_inner(contender).expect("every task has ended");
    contender.close().await;
    monitor.wait_until_gone().await?;
    result
}

/// Warms `contender` up, then runs `load` on it and times it.
async fn time<C: Contender>(
    contender: &Arc<C>,
    load: &Load,
    monitor: &Monitor,
) -> Result<Run, BoxError> {
    // Warm up: every connection out at once (so all are open before
    // timing starts), `SELECT 1` on each, then all back.
    let mut held = Vec::with_capacity(POOL_SIZE as usize);
    for task in 0..POOL_SIZE {
        held.push(contender.get(task).await?);
    }
    for conn in &mut held {
        C::select_one(conn, load.statement).await?;
    }
    drop(held);
    tokio::time::sleep(Duration::from_millis(50)).await;

    let tasks = u64::from(TASKS);
    let start = Arc::new(Barrier::new(TASKS as usize + 1));
    let handles: Vec<_> = (0..TASKS)
        .map(|i| {
            let ops = load.ops / tasks + u64::from(u64::from(i) < load.ops % tasks);
            tokio::spawn(task(
                contender.clone(),
                i,
                ops,
                load.statement,
                start.clone(),
            ))
        })
        .collect();
    start.wait().await;
    let began = Instant::now();
    // Every task is awaited before any error is returned, so that the
    // contender is no longer shared when it is closed.
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        results.push(handle.await);
    }
    let elapsed = began.elapsed();
    let connections = monitor.connections().await?;

    let mut waits = wait_histogram();
    for task_waits in results {
        for wait in task_waits?? {
            waits.saturating_record(wait);
        }
    }
    Ok(Run {
        elapsed,
        waits: C::WAITS.then_some(waits),
        connections,
    })
}

/// One task: waits for the start, then does `ops` get, `SELECT 1`, drop;
/// returns each get's wait in nanoseconds (none for the ceiling).
async fn task<C: Contender>(
    contender: Arc<C>,
    index: u32,
    ops: u64,
    statement: Statement,
    start: Arc<Barrier>,
) -> Result<Vec<u64>, BoxError> {
    let mut waits = Vec::with_capacity(if C::WAITS { ops as usize } else { 0 });
    start.wait().await;
    for _ in 0..ops {
        let asked = Instant::now();
        let mut conn = contender.get(index).await?;
        if C::WAITS {
            waits.push(u64::try_from(asked.elapsed().as_nanos()).unwrap_or(u64::MAX));
        }
        C::select_one(&mut conn, statement).await?;
        drop(conn);
    }
    Ok(waits)
}

/// One connection that watches the server: free slots before the start,
/// the contenders' connections after each run.
struct Monitor {
    /// The connection.
    client: Client,
    /// Its driver's task.
    _driver: JoinHandle<()>,
}

impl Monitor {
    /// Connects with `application_name` [`MONITOR_APP`].
    async fn connect(url: &str) -> Result<Self, BoxError> {
        let mut config: tokio_postgres::Config = url.parse()?;
        config.application_name(MONITOR_APP);
        let (client, driver) = connect(&config).await?;
        Ok(Self {
            client,
            _driver: driver,
        })
    }

    /// Fails unless the server has room for a pool of [`POOL_SIZE`] and
    /// [`HEADROOM`] more; also when connections of an earlier benchmark
    /// are still there.
    async fn check_room(&self) -> Result<(), BoxError> {
        let leftover = self.connections().await?;
        if leftover > 0 {
            return Err(format!(
                "the server still has {leftover} connections named {APP}: \
                 is another benchmark running?"
            )
            .into());
        }
        let row = self
            .client
            .query_one(
                "SELECT current_setting('max_connections')::int8 - count(*) \
                 FROM pg_stat_activity WHERE backend_type = 'client backend'",
                &[],
            )
            .await?;
        let free: i64 = row.get(0);
        let needed = i64::from(POOL_SIZE) + HEADROOM;
        if free < needed {
            return Err(format!(
                "the server has {free} connection slots free; the benchmark needs {needed} \
                 ({POOL_SIZE} and {HEADROOM} left for others)"
            )
            .into());
        }
        Ok(())
    }

    /// How many connections named [`APP`] the server has.
    async fn connections(&self) -> Result<i64, BoxError> {
        let row = self
            .client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&APP],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Waits until the server has no connection named [`APP`] left.
    async fn wait_until_gone(&self) -> Result<(), BoxError> {
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        loop {
            let left = self.connections().await?;
            if left == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{left} connections still open {CLOSE_TIMEOUT:?} after closing the pool"
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `url` with `application_name` [`APP`], so that the benchmark can count
/// its connections on the server.
fn named(url: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}application_name={APP}")
}

/// One output line.
#[derive(Serialize)]
struct PgLine {
    /// Always `postgres`.
    bench: &'static str,
    /// The contender.
    pool: PgKind,
    /// The call of the tokio-postgres-based contenders.
    statement: Statement,
    /// Connections.
    pool_size: u32,
    /// Concurrent tasks.
    tasks: u32,
    /// Operations a run.
    ops: u64,
    /// Runs.
    runs: usize,
    /// Median over the runs of operations per second.
    ops_per_sec: u64,
    /// Each run's operations per second, in order.
    ops_per_sec_each: Vec<u64>,
    /// Most connections of the contender the server had at the end of a
    /// run (50 unless it opened fewer, or left some half-closed).
    server_connections: i64,
    /// Wait percentiles of every get of every run, when it has gets.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    waits: Option<PgWaits>,
}

/// Percentiles of the get waits, in microseconds.
#[derive(Serialize)]
struct PgWaits {
    /// Median.
    wait_p50_us: f64,
    /// 99th percentile.
    wait_p99_us: f64,
    /// 99.9th percentile.
    wait_p999_us: f64,
}

impl PgWaits {
    /// The percentiles of `histogram` (nanoseconds).
    fn of(histogram: &Histogram<u64>) -> Self {
        Self {
            wait_p50_us: micros_at(histogram, 0.5),
            wait_p99_us: micros_at(histogram, 0.99),
            wait_p999_us: micros_at(histogram, 0.999),
        }
    }
}

/// Runs the PostgreSQL benchmark as `args` say and prints one line a
/// contender.
pub(crate) async fn run(args: PgArgs) -> Result<(), BoxError> {
    let ops = args.ops.unwrap_or(if args.quick { 5_000 } else { 200_000 });
    let runs = args.runs.unwrap_or(if args.quick { 1 } else { 3 });
    let kinds = if args.pools.is_empty() {
        PgKind::value_variants().to_vec()
    } else {
        args.pools
    };
    let url = named(&args.url);
    let load = Load {
        config: url.parse()?,
        url,
        ops,
        statement: args.statement,
    };
    let monitor = Monitor::connect(&args.url).await?;
    monitor.check_room().await?;

    let mut all: Vec<Vec<Run>> = kinds.iter().map(|_| Vec::new()).collect();
    for _ in 0..runs {
        for (kind, its_runs) in kinds.iter().zip(&mut all) {
            its_runs.push(kind.measure(&load, &monitor).await?);
        }
    }

    for (&pool, its_runs) in kinds.iter().zip(all) {
        let each: Vec<f64> = its_runs
            .iter()
            .map(|run| ops as f64 / run.elapsed.as_secs_f64())
            .collect();
        let mut waits: Option<Histogram<u64>> = None;
        for run_waits in its_runs.iter().filter_map(|run| run.waits.as_ref()) {
            waits
                .get_or_insert_with(wait_histogram)
                .add(run_waits)
                .expect("histograms with the same bounds");
        }
        print(&PgLine {
            bench: "postgres",
            pool,
            statement: load.statement,
            pool_size: POOL_SIZE,
            tasks: TASKS,
            ops,
            runs: its_runs.len(),
            ops_per_sec: median(each.clone()).round() as u64,
            ops_per_sec_each: each.iter().map(|rate| rate.round() as u64).collect(),
            server_connections: its_runs
                .iter()
                .map(|run| run.connections)
                .max()
                .unwrap_or(0),
            waits: waits.as_ref().map(PgWaits::of),
        });
    }
    Ok(())
}
