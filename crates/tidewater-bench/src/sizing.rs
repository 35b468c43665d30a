//! `tidewater-bench sizing`: fixed pool sizes against the adaptive limit,
//! on workloads whose knee sits in different places.
//!
//! Every configuration (each `--sizes` value as a fixed pool, and an
//! adaptive pool with ceiling `--ceiling`) runs on a fresh tidewater pool:
//! `--tasks` tokio tasks each loop get → operation → drop for `--warmup`
//! (not measured; the adaptive pool finds its limit then) and `--duration`
//! (measured). An operation counts when it ends within the measured window:
//! its latency (get and operation) and its acquisition wait (get alone) go
//! into histograms; an error is counted and the task goes on. The workloads:
//!
//! - `cpu`: `SELECT sum(i) FROM generate_series(1, 8500)`, about 1 ms of
//!   one core ([`CPU_ROWS`]; read-only, the knee is the server's cores);
//! - `hot`: a bank transfer between two of 10 accounts (row-lock
//!   contention): `BEGIN`, two `UPDATE accounts` in id order, one `INSERT`
//!   of two `ledger` rows, `COMMIT`, on prepared statements;
//! - `sqlite`: the same transfer on an SQLite file (WAL, tidewater-sqlite's
//!   defaults, `busy_timeout` 5 s) in `BEGIN IMMEDIATE`: writes serialize.
//!
//! The PostgreSQL workloads run on one private cluster from the testkit
//! ([`PgCluster`], never the shared server), as an ordinary role; `hot`
//! recreates its tables before each run, `sqlite` gets a new file in a new
//! temporary folder. Runs alternate order between rounds (forward, then
//! reversed); the tables show the median of each figure over the rounds.
//!
//! ```text
//! cargo run --release -p tidewater-bench -- sizing                      # ~8 min a round
//! cargo run --release -p tidewater-bench -- sizing --workloads hot --sizes 5,50 --json
//! ```

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use serde::Serialize;
use tempfile::TempDir;
use tidewater::{Manager, Pool, PoolConfig, SizingConfig, SizingMode, SizingReport};
use tidewater_postgres::{PgConnection, PgManager, PgOptions};
use tidewater_sqlite::rusqlite::{self, TransactionBehavior};
use tidewater_sqlite::{SqliteConnection, SqliteManager, SqliteOptions};
use tidewater_testkit::PgCluster;

use crate::drill::chain;
use crate::postgres::BoxError;
use crate::{median, micros_at, print, wait_histogram};

/// Rows the `cpu` query sums: about 1 ms on one core of the 2-core
/// machine it was tuned on (PostgreSQL 16, release build).
const CPU_ROWS: i32 = 8_500;
/// The `cpu` query.
const CPU_SQL: &str = "SELECT sum(i) FROM generate_series(1, $1::int4) AS s(i)";
/// Accounts of the `hot` and `sqlite` workloads.
const ACCOUNTS: i32 = 10;
/// The `hot` schema, created afresh before each run.
const PG_SCHEMA: &str = "DROP TABLE IF EXISTS ledger, accounts;
    CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);
    CREATE TABLE ledger (id bigserial PRIMARY KEY, account int NOT NULL, amount bigint NOT NULL);
    INSERT INTO accounts SELECT id, 0 FROM generate_series(1, 10) AS s(id);";
/// One leg of a transfer (PostgreSQL).
const PG_MOVE: &str = "UPDATE accounts SET balance = balance + $1 WHERE id = $2";
/// The two ledger rows of a transfer (PostgreSQL).
const PG_LEDGER: &str = "INSERT INTO ledger (account, amount) VALUES ($1, -1), ($2, 1)";
/// The `sqlite` schema, in a new file each run.
const SQLITE_SCHEMA: &str = "
    CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
    CREATE TABLE ledger (id INTEGER PRIMARY KEY, account INTEGER NOT NULL, amount INTEGER NOT NULL);
    WITH RECURSIVE s(id) AS (SELECT 1 UNION ALL SELECT id + 1 FROM s WHERE id < 10)
    INSERT INTO accounts SELECT id, 0 FROM s;";
/// One leg of a transfer (SQLite).
const SQLITE_MOVE: &str = "UPDATE accounts SET balance = balance + ?1 WHERE id = ?2";
/// The two ledger rows of a transfer (SQLite).
const SQLITE_LEDGER: &str = "INSERT INTO ledger (account, amount) VALUES (?1, -1), (?2, 1)";
/// The ordinary role the pools log in as.
const ROLE: &str = "bench";
/// Every pool's acquire timeout: far above any wait here, so it never fires.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the adaptive limit is sampled in the measured window.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// How long a closed pool's connections may take to leave the server.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(15);
/// Connection slots of the cluster beyond the largest pool.
const SPARE_CONNECTIONS: u32 = 60;

/// Runs fixed pool sizes and the adaptive limit on a CPU-bound query, on
/// hot-row transfers and on SQLite writes, and prints a table a workload.
#[derive(clap::Args, Debug)]
pub(crate) struct SizingArgs {
    /// The workloads, comma-separated (default: cpu, hot, sqlite).
    #[arg(long, value_enum, value_delimiter = ',')]
    workloads: Vec<Workload>,
    /// The fixed pool sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [2, 5, 10, 20, 50, 100, 200],
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    sizes: Vec<u32>,
    /// The adaptive pool's ceiling (`max_size`).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    ceiling: u32,
    /// Leave the adaptive pool out.
    #[arg(long)]
    no_adaptive: bool,
    /// Concurrent tasks, each looping get → operation → drop.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    tasks: u32,
    /// Unmeasured time at the start of each run.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Measured time of each run.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Times the whole set of runs is repeated, in alternating order.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// One JSON object a line (each run, then a summary a workload)
    /// instead of tables.
    #[arg(long)]
    json: bool,
}

/// A workload; its name on the command line and in the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Workload {
    /// A CPU-bound read-only query of about 1 ms (PostgreSQL).
    Cpu,
    /// Transfers between 10 hot accounts (PostgreSQL).
    Hot,
    /// The same transfers on an SQLite file.
    Sqlite,
}

impl Workload {
    /// Its name on the command line.
    fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Hot => "hot",
            Self::Sqlite => "sqlite",
        }
    }

    /// Whether it runs on the PostgreSQL cluster.
    fn on_postgres(self) -> bool {
        matches!(self, Self::Cpu | Self::Hot)
    }

    /// What it runs, for the table's heading.
    fn describe(self) -> String {
        match self {
            Self::Cpu => format!(
                "`SELECT sum(i) FROM generate_series(1, {CPU_ROWS})` (about 1 ms of one core)"
            ),
            Self::Hot => format!(
                "transfers between {ACCOUNTS} hot accounts: BEGIN, 2 UPDATE in id order, \
                 INSERT of 2 ledger rows, COMMIT"
            ),
            Self::Sqlite => format!(
                "the same transfers between {ACCOUNTS} accounts on an SQLite file \
                 (WAL, BEGIN IMMEDIATE, busy_timeout 5 s)"
            ),
        }
    }
}

/// A pool configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PoolSpec {
    /// `max_size` this, fixed sizing.
    Fixed(u32),
    /// Adaptive sizing with this ceiling (`max_size`), defaults otherwise.
    Adaptive(u32),
}

impl PoolSpec {
    /// `fixed` or `adaptive`.
    fn kind(self) -> &'static str {
        match self {
            Self::Fixed(_) => "fixed",
            Self::Adaptive(_) => "adaptive",
        }
    }

    /// The fixed size, or the ceiling.
    fn size(self) -> u32 {
        match self {
            Self::Fixed(size) | Self::Adaptive(size) => size,
        }
    }

    /// Its pool configuration, for `tasks` callers at once.
    fn config(self, tasks: u32) -> PoolConfig {
        let defaults = PoolConfig::default();
        let mode = match self {
            Self::Fixed(_) => SizingMode::Fixed,
            Self::Adaptive(_) => SizingMode::Adaptive,
        };
        PoolConfig {
            name: "sizing".to_owned(),
            max_size: self.size(),
            acquire_timeout: ACQUIRE_TIMEOUT,
            max_waiters: defaults.max_waiters.max(tasks),
            sizing: SizingConfig {
                mode,
                ..SizingConfig::default()
            },
            ..defaults
        }
    }
}

/// What to run, from the command line.
struct Plan {
    /// The workloads, in order.
    workloads: Vec<Workload>,
    /// The pool configurations, in order.
    specs: Vec<PoolSpec>,
    /// Concurrent tasks.
    tasks: u32,
    /// Unmeasured time at the start of each run.
    warmup: Duration,
    /// Measured time of each run.
    duration: Duration,
    /// Repetitions of the whole set.
    rounds: u32,
    /// JSON lines instead of tables.
    json: bool,
}

impl Plan {
    /// The plan `args` describe.
    fn new(args: SizingArgs) -> Self {
        let mut specs: Vec<PoolSpec> = args.sizes.into_iter().map(PoolSpec::Fixed).collect();
        if !args.no_adaptive {
            specs.push(PoolSpec::Adaptive(args.ceiling));
        }
        Self {
            workloads: if args.workloads.is_empty() {
                Workload::value_variants().to_vec()
            } else {
                args.workloads
            },
            specs,
            tasks: args.tasks,
            warmup: args.warmup,
            duration: args.duration,
            rounds: args.rounds,
            json: args.json,
        }
    }

    /// Every (workload, configuration) of round `round` (from 0), in the
    /// order they run: forward in even rounds, reversed in odd ones.
    fn jobs(&self, round: u32) -> Vec<(Workload, PoolSpec)> {
        let mut jobs: Vec<_> = self
            .workloads
            .iter()
            .flat_map(|&workload| self.specs.iter().map(move |&spec| (workload, spec)))
            .collect();
        if round % 2 == 1 {
            jobs.reverse();
        }
        jobs
    }
}

/// A database and one operation on it, as the tasks drive it.
trait Target: Send + Sync + 'static {
    /// The pool's manager.
    type M: Manager<Connection: Sync>;

    /// A pool over the database.
    fn open(&self, config: PoolConfig) -> Result<Pool<Self::M>, BoxError>;

    /// Creates the schema, on the pool's first connection.
    fn prepare(
        &self,
        conn: &<Self::M as Manager>::Connection,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// One operation.
    fn operate(
        &self,
        conn: &<Self::M as Manager>::Connection,
        rng: &mut fastrand::Rng,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// A transfer of 1 between two distinct accounts.
#[derive(Clone, Copy, Debug)]
struct Transfer {
    /// The account debited.
    from: i32,
    /// The account credited.
    to: i32,
}

impl Transfer {
    /// Two distinct accounts in `1..=ACCOUNTS`, uniformly.
    fn random(rng: &mut fastrand::Rng) -> Self {
        let from = rng.i32(1..=ACCOUNTS);
        let to = (from + rng.i32(0..ACCOUNTS - 1)) % ACCOUNTS + 1;
        Self { from, to }
    }

    /// Its two legs, (account, change), the lower id first so that two
    /// transfers never wait for each other's rows in a cycle.
    fn legs(self) -> [(i32, i64); 2] {
        let mut legs = [(self.from, -1), (self.to, 1)];
        legs.sort_unstable();
        legs
    }
}

/// The `cpu` or `hot` workload on the cluster.
struct PgTarget {
    /// The cluster, as the benchmark's role.
    url: String,
    /// Which workload.
    workload: Workload,
}

impl Target for PgTarget {
    type M = PgManager;

    fn open(&self, config: PoolConfig) -> Result<Pool<PgManager>, BoxError> {
        // Defaults but the URL: statement_timeout 30 s, reset rolls back a
        // transaction left open (after an error mid-transfer).
        let options = PgOptions {
            url: self.url.clone(),
            ..PgOptions::default()
        };
        Ok(Pool::new(PgManager::new(options)?, config)?)
    }

    async fn prepare(&self, conn: &PgConnection) -> Result<(), BoxError> {
        if self.workload == Workload::Hot {
            conn.batch_execute(PG_SCHEMA).await?;
        }
        Ok(())
    }

    async fn operate(&self, conn: &PgConnection, rng: &mut fastrand::Rng) -> Result<(), BoxError> {
        if self.workload == Workload::Cpu {
            conn.query_one(CPU_SQL, &[&CPU_ROWS]).await?;
            return Ok(());
        }
        // `execute` runs each on a statement prepared once per connection.
        let transfer = Transfer::random(rng);
        conn.batch_execute("BEGIN").await?;
        for (account, change) in transfer.legs() {
            conn.execute(PG_MOVE, &[&change, &account]).await?;
        }
        conn.execute(PG_LEDGER, &[&transfer.from, &transfer.to])
            .await?;
        conn.batch_execute("COMMIT").await?;
        Ok(())
    }
}

/// The `sqlite` workload: a new database file in a folder of its own,
/// removed with the target.
struct SqliteTarget {
    /// The folder.
    dir: TempDir,
}

impl Target for SqliteTarget {
    type M = SqliteManager;

    fn open(&self, config: PoolConfig) -> Result<Pool<SqliteManager>, BoxError> {
        let options = SqliteOptions::file(self.dir.path().join("bank.db"));
        Ok(SqliteManager::new(options)?.into_pool(config)?)
    }

    async fn prepare(&self, conn: &SqliteConnection) -> Result<(), BoxError> {
        Ok(conn.execute_batch(SQLITE_SCHEMA).await?)
    }

    async fn operate(
        &self,
        conn: &SqliteConnection,
        rng: &mut fastrand::Rng,
    ) -> Result<(), BoxError> {
        let transfer = Transfer::random(rng);
        Ok(conn
            .interact(move |c| sqlite_transfer(c, transfer))
            .await??)
    }
}

/// One transfer on the connection's thread.
fn sqlite_transfer(conn: &mut rusqlite::Connection, transfer: Transfer) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for (account, change) in transfer.legs() {
        tx.prepare_cached(SQLITE_MOVE)?.execute((change, account))?;
    }
    tx.prepare_cached(SQLITE_LEDGER)?
        .execute((transfer.from, transfer.to))?;
    tx.commit()
}

/// The measured part of a run.
#[derive(Clone, Copy, Debug)]
struct Window {
    /// The end of the warm-up.
    start: Instant,
    /// The end of the run.
    end: Instant,
}

/// What one task saw in the measured window.
#[derive(Default)]
struct Tally {
    /// Each operation's latency (get and operation), in nanoseconds.
    latencies: Vec<u64>,
    /// Each operation's get, in nanoseconds.
    waits: Vec<u64>,
    /// Failed operations.
    errors: u64,
    /// The first failure's message.
    first_error: Option<String>,
}

impl Tally {
    /// Counts one operation that ended in the window after `latency`.
    fn record(&mut self, result: Result<Duration, BoxError>, latency: Duration) {
        match result {
            Ok(wait) => {
                self.latencies.push(nanos(latency));
                self.waits.push(nanos(wait));
            }
            Err(error) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| chain(&*error));
            }
        }
    }
}

/// `duration` in nanoseconds.
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// One task: get → operation → drop until the window ends.
async fn worker<T: Target>(target: Arc<T>, pool: Pool<T::M>, window: Window, seed: u64) -> Tally {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut tally = Tally::default();
    loop {
        let began = Instant::now();
        if began >= window.end {
            return tally;
        }
        let result = operation(&*target, &pool, &mut rng, began).await;
        let ended = Instant::now();
        if ended >= window.start && ended < window.end {
            tally.record(result, ended - began);
        }
    }
}

/// One get → operation → drop; returns how long the get took.
async fn operation<T: Target>(
    target: &T,
    pool: &Pool<T::M>,
    rng: &mut fastrand::Rng,
    began: Instant,
) -> Result<Duration, BoxError> {
    let conn = pool.get().await?;
    let waited = began.elapsed();
    target.operate(&conn, rng).await?;
    Ok(waited)
}

/// The limit over the measured window.
struct LimitTrace {
    /// Lowest sampled.
    min: u32,
    /// Highest sampled.
    max: u32,
    /// The sizing at the window's end.
    last: SizingReport,
}

/// Samples the pool's limit every [`SAMPLE_EVERY`] over `window`.
async fn trace_limit<M: Manager>(pool: Pool<M>, window: Window) -> LimitTrace {
    let mut at = window.start;
    let mut trace = LimitTrace {
        min: u32::MAX,
        max: 0,
        last: pool.sizing(),
    };
    loop {
        tokio::time::sleep_until(at.into()).await;
        trace.last = pool.sizing();
        trace.min = trace.min.min(trace.last.limit);
        trace.max = trace.max.max(trace.last.limit);
        if at >= window.end {
            return trace;
        }
        at = (at + SAMPLE_EVERY).min(window.end);
    }
}

/// Runs `spec` on a fresh pool over `target`, then closes it (before the
/// target, and an SQLite target's folder, goes).
async fn measure<T: Target>(
    target: T,
    spec: PoolSpec,
    plan: &Plan,
) -> Result<(Vec<Tally>, LimitTrace), BoxError> {
    let pool = target.open(spec.config(plan.tasks))?;
    let target = Arc::new(target);
    let result = drive(&target, &pool, plan).await;
    pool.close().await;
    drop(target);
    result
}

/// Prepares the schema, then runs the tasks and the limit's sampler.
async fn drive<T: Target>(
    target: &Arc<T>,
    pool: &Pool<T::M>,
    plan: &Plan,
) -> Result<(Vec<Tally>, LimitTrace), BoxError> {
    target.prepare(&*pool.get().await?).await?;
    let start = Instant::now() + plan.warmup;
    let window = Window {
        start,
        end: start + plan.duration,
    };
    let tracer = tokio::spawn(trace_limit(pool.clone(), window));
    let tasks: Vec<_> = (0..plan.tasks)
        .map(|i| tokio::spawn(worker(target.clone(), pool.clone(), window, u64::from(i))))
        .collect();
    let mut tallies = Vec::with_capacity(tasks.len());
    for task in tasks {
        tallies.push(task.await?);
    }
    Ok((tallies, tracer.await?))
}

/// Which configuration a run measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
struct Key {
    /// The workload.
    workload: Workload,
    /// `fixed` or `adaptive`.
    pool: &'static str,
    /// The fixed size, or the adaptive ceiling.
    size: u32,
}

impl Key {
    /// The key of `spec` on `workload`.
    fn new(workload: Workload, spec: PoolSpec) -> Self {
        Self {
            workload,
            pool: spec.kind(),
            size: spec.size(),
        }
    }

    /// Its name in the table.
    fn label(self) -> String {
        if self.pool == "adaptive" {
            format!("adaptive (ceiling {})", self.size)
        } else {
            format!("fixed {}", self.size)
        }
    }
}

/// What one run measured: one JSON line.
#[derive(Debug, Serialize)]
struct Run {
    /// Always `sizing`.
    bench: &'static str,
    /// Always `run`.
    line: &'static str,
    /// The configuration.
    #[serde(flatten)]
    key: Key,
    /// The round, from 1.
    round: u32,
    /// Concurrent tasks.
    tasks: u32,
    /// Operations that succeeded in the window.
    ops: u64,
    /// `ops` a second.
    ops_per_sec: f64,
    /// Median latency (get and operation), in milliseconds.
    latency_p50_ms: f64,
    /// 99th percentile latency, in milliseconds.
    latency_p99_ms: f64,
    /// 99th percentile of the get alone, in milliseconds.
    wait_p99_ms: f64,
    /// Operations that failed in the window.
    errors: u64,
    /// The first failure's message.
    #[serde(skip_serializing_if = "Option::is_none")]
    first_error: Option<String>,
    /// The limit and the use times.
    #[serde(flatten)]
    limit: LimitFigures,
}

/// The limit over a run's window, and the use times behind it.
#[derive(Debug, Serialize)]
struct LimitFigures {
    /// The limit at the window's end.
    limit_final: u32,
    /// Lowest limit sampled.
    limit_min: u32,
    /// Highest limit sampled.
    limit_max: u32,
    /// The floor.
    floor: u32,
    /// The ceiling.
    ceiling: u32,
    /// Why the limit last moved or held.
    reason: &'static str,
    /// The baseline mean use time, in milliseconds (adaptive).
    baseline_use_ms: Option<f64>,
    /// The last interval's mean use time, in milliseconds (adaptive).
    recent_use_ms: Option<f64>,
    /// The last interval's mean connections in use (adaptive).
    recent_in_use: f64,
}

impl LimitFigures {
    /// The figures of `trace`.
    fn of(trace: &LimitTrace) -> Self {
        let millis = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1_000.0);
        let last = &trace.last;
        Self {
            limit_final: last.limit,
            limit_min: trace.min,
            limit_max: trace.max,
            floor: last.floor,
            ceiling: last.ceiling,
            reason: last.reason.as_str(),
            baseline_use_ms: millis(last.baseline_use),
            recent_use_ms: millis(last.recent_use),
            recent_in_use: last.recent_in_use,
        }
    }
}

impl Run {
    /// The run of `key` from its tasks' tallies and its limit's trace.
    fn new(key: Key, round: u32, plan: &Plan, tallies: Vec<Tally>, trace: &LimitTrace) -> Self {
        let (mut latency, mut wait) = (wait_histogram(), wait_histogram());
        let (mut errors, mut first_error) = (0, None);
        for tally in tallies {
            for (l, w) in tally.latencies.into_iter().zip(tally.waits) {
                latency.saturating_record(l);
                wait.saturating_record(w);
            }
            errors += tally.errors;
            first_error = first_error.or(tally.first_error);
        }
        let millis = |histogram, quantile| micros_at(histogram, quantile) / 1_000.0;
        Self {
            bench: "sizing",
            line: "run",
            key,
            round,
            tasks: plan.tasks,
            ops: latency.len(),
            ops_per_sec: latency.len() as f64 / plan.duration.as_secs_f64(),
            latency_p50_ms: millis(&latency, 0.5),
            latency_p99_ms: millis(&latency, 0.99),
            wait_p99_ms: millis(&wait, 0.99),
            errors,
            first_error,
            limit: LimitFigures::of(trace),
        }
    }
}

/// The median of each figure of one configuration over the rounds.
#[derive(Debug, Serialize)]
struct Median {
    /// The configuration.
    #[serde(flatten)]
    key: Key,
    /// Runs it is the median of.
    runs: usize,
    /// Operations a second.
    ops_per_sec: f64,
    /// Median latency, in milliseconds.
    latency_p50_ms: f64,
    /// 99th percentile latency, in milliseconds.
    latency_p99_ms: f64,
    /// 99th percentile wait, in milliseconds.
    wait_p99_ms: f64,
    /// Failed operations.
    errors: f64,
    /// The limit at the end.
    limit_final: f64,
    /// Lowest limit sampled.
    limit_min: f64,
    /// Highest limit sampled.
    limit_max: f64,
    /// Baseline use time, in milliseconds (adaptive).
    baseline_use_ms: Option<f64>,
    /// Last interval's use time, in milliseconds (adaptive).
    recent_use_ms: Option<f64>,
}

impl Median {
    /// The medians of `runs`, all of configuration `key` (at least one).
    fn of(key: Key, runs: &[&Run]) -> Self {
        let of = |figure: fn(&Run) -> f64| median(runs.iter().map(|run| figure(run)).collect());
        let of_some = |figure: fn(&Run) -> Option<f64>| {
            let values: Vec<f64> = runs.iter().filter_map(|run| figure(run)).collect();
            (!values.is_empty()).then(|| median(values))
        };
        Self {
            key,
            runs: runs.len(),
            ops_per_sec: of(|run| run.ops_per_sec),
            latency_p50_ms: of(|run| run.latency_p50_ms),
            latency_p99_ms: of(|run| run.latency_p99_ms),
            wait_p99_ms: of(|run| run.wait_p99_ms),
            errors: of(|run| run.errors as f64),
            limit_final: of(|run| f64::from(run.limit.limit_final)),
            limit_min: of(|run| f64::from(run.limit.limit_min)),
            limit_max: of(|run| f64::from(run.limit.limit_max)),
            baseline_use_ms: of_some(|run| run.limit.baseline_use_ms),
            recent_use_ms: of_some(|run| run.limit.recent_use_ms),
        }
    }
}

/// The adaptive pool against one fixed size.
#[derive(Debug, Serialize)]
struct Versus {
    /// The fixed size.
    fixed: u32,
    /// Whether it is the fixed size with the best throughput.
    best: bool,
    /// Its throughput.
    fixed_ops_per_sec: f64,
    /// Adaptive's throughput, as a percentage of its.
    throughput_pct: f64,
    /// Adaptive's p99 latency, as a multiple of its.
    p99_ratio: f64,
}

impl Versus {
    /// `adaptive` against `fixed`.
    fn new(adaptive: &Median, fixed: &Median, best: bool) -> Self {
        Self {
            fixed: fixed.key.size,
            best,
            fixed_ops_per_sec: fixed.ops_per_sec,
            throughput_pct: 100.0 * adaptive.ops_per_sec / fixed.ops_per_sec,
            p99_ratio: adaptive.latency_p99_ms / fixed.latency_p99_ms,
        }
    }
}

/// One workload's medians and the comparison: one JSON line.
#[derive(Debug, Serialize)]
struct Summary {
    /// Always `sizing`.
    bench: &'static str,
    /// Always `summary`.
    line: &'static str,
    /// The workload.
    workload: Workload,
    /// Each configuration's medians, in order.
    configs: Vec<Median>,
    /// Adaptive against the best fixed size by throughput, then against
    /// fixed 50 when it ran and is not the best.
    adaptive_vs: Vec<Versus>,
}

impl Summary {
    /// The summary of `workload` from all the runs.
    fn new(workload: Workload, plan: &Plan, runs: &[Run]) -> Self {
        let configs: Vec<Median> = plan
            .specs
            .iter()
            .map(|&spec| {
                let key = Key::new(workload, spec);
                let its: Vec<&Run> = runs.iter().filter(|run| run.key == key).collect();
                Median::of(key, &its)
            })
            .collect();
        let adaptive = configs.iter().find(|median| median.key.pool == "adaptive");
        let fixed = || configs.iter().filter(|median| median.key.pool == "fixed");
        let best = fixed().max_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
        let fifty = fixed().find(|median| median.key.size == 50);
        let mut adaptive_vs = Vec::new();
        if let (Some(adaptive), Some(best)) = (adaptive, best) {
            adaptive_vs.push(Versus::new(adaptive, best, true));
            if let Some(fifty) = fifty.filter(|fifty| fifty.key != best.key) {
                adaptive_vs.push(Versus::new(adaptive, fifty, false));
            }
        }
        Self {
            bench: "sizing",
            line: "summary",
            workload,
            configs,
            adaptive_vs,
        }
    }
}

/// Where the workloads run.
struct Databases {
    /// The private cluster, when a workload needs PostgreSQL.
    cluster: Option<PgCluster>,
    /// Its URL for the benchmark's role.
    url: String,
    /// Its version, for the heading.
    version: String,
}

impl Databases {
    /// Starts the cluster if `plan` has a PostgreSQL workload.
    async fn start(plan: &Plan) -> Result<Self, BoxError> {
        let mut databases = Self {
            cluster: None,
            url: String::new(),
            version: String::new(),
        };
        if !plan.workloads.iter().any(|w| w.on_postgres()) {
            return Ok(databases);
        }
        let cluster = PgCluster::new().await?;
        let largest = plan.specs.iter().map(|spec| spec.size()).max().unwrap_or(0);
        cluster
            .set_max_connections(largest.max(200) + SPARE_CONNECTIONS)
            .await?;
        cluster.create_role(ROLE, ROLE, None).await?;
        // PostgreSQL 15 and later: only the owner creates in `public`.
        cluster
            .execute(&format!("GRANT CREATE ON SCHEMA public TO {ROLE}"))
            .await?;
        databases.url = cluster.url_for(ROLE, ROLE, "postgres");
        databases.version = cluster.execute("SHOW server_version").await?;
        databases.cluster = Some(cluster);
        Ok(databases)
    }

    /// Runs `spec` on `workload` once.
    async fn run(
        &self,
        workload: Workload,
        spec: PoolSpec,
        plan: &Plan,
    ) -> Result<(Vec<Tally>, LimitTrace), BoxError> {
        let pg = |workload| PgTarget {
            url: self.url.clone(),
            workload,
        };
        let measured = match workload {
            Workload::Cpu | Workload::Hot => measure(pg(workload), spec, plan).await?,
            Workload::Sqlite => {
                let dir = tempfile::Builder::new()
                    .prefix("tidewater-sizing-")
                    .tempdir()?;
                measure(SqliteTarget { dir }, spec, plan).await?
            }
        };
        if let (true, Some(cluster)) = (workload.on_postgres(), &self.cluster) {
            wait_until_gone(cluster).await?;
        }
        Ok(measured)
    }
}

/// Waits until the cluster has no session of [`ROLE`] left.
async fn wait_until_gone(cluster: &PgCluster) -> Result<(), BoxError> {
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    let sql = format!("SELECT count(*) FROM pg_stat_activity WHERE usename = '{ROLE}'");
    loop {
        let left = cluster.execute(&sql).await?;
        if left.trim() == "0" {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{left} sessions still open {CLOSE_TIMEOUT:?} after close").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the sizing benchmark as `args` say and prints its tables (or JSON
/// lines).
pub(crate) async fn run(args: SizingArgs) -> Result<(), BoxError> {
    let plan = Plan::new(args);
    let databases = Databases::start(&plan).await?;
    let runs = run_rounds(&plan, &databases).await;
    // Stops the cluster (also on the error path: `databases` is dropped
    // when this returns early).
    let version = databases.version.clone();
    drop(databases);
    let runs = runs?;
    let summaries: Vec<Summary> = plan
        .workloads
        .iter()
        .map(|&workload| Summary::new(workload, &plan, &runs))
        .collect();
    if plan.json {
        runs.iter().for_each(print);
        summaries.iter().for_each(print);
    } else {
        print!("{}", tables(&plan, &version, &summaries));
    }
    Ok(())
}

/// Every round of every (workload, configuration).
async fn run_rounds(plan: &Plan, databases: &Databases) -> Result<Vec<Run>, BoxError> {
    let mut runs = Vec::new();
    for round in 0..plan.rounds {
        for (workload, spec) in plan.jobs(round) {
            let (tallies, trace) = databases.run(workload, spec, plan).await?;
            let run = Run::new(Key::new(workload, spec), round + 1, plan, tallies, &trace);
            if !plan.json {
                eprintln!(
                    "tidewater-bench sizing: round {}/{}, {} {}: {:.0} ops/s, \
                     p99 {:.2} ms, {} errors, limit {} ({}-{})",
                    round + 1,
                    plan.rounds,
                    workload.name(),
                    run.key.label(),
                    run.ops_per_sec,
                    run.latency_p99_ms,
                    run.errors,
                    run.limit.limit_final,
                    run.limit.limit_min,
                    run.limit.limit_max,
                );
            }
            runs.push(run);
        }
    }
    Ok(runs)
}

/// The Markdown report: the settings, then a table a workload.
fn tables(plan: &Plan, version: &str, summaries: &[Summary]) -> String {
    let sizing = SizingConfig::default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let mut out = format!(
        "{} tasks each looping get → operation → drop; {:?} warm-up, {:?} measured, \
         {} round(s) (medians); acquire_timeout {:?}; {cores} cores; adaptive: floor {}, \
         interval {:?}, step {}, min_elasticity {}; PostgreSQL {}: private cluster (fsync off)\n",
        plan.tasks,
        plan.warmup,
        plan.duration,
        plan.rounds,
        ACQUIRE_TIMEOUT,
        sizing.floor,
        sizing.interval,
        sizing.step,
        sizing.min_elasticity,
        if version.is_empty() {
            "unused"
        } else {
            version
        },
    );
    for summary in summaries {
        table(&mut out, summary);
    }
    out
}

/// One workload's table and comparison lines.
fn table(out: &mut String, summary: &Summary) {
    let _ = write!(
        out,
        "\n### {}: {}\n\n\
         | pool | throughput (ops/s) | latency p50 (ms) | latency p99 (ms) | wait p99 (ms) \
         | errors | limit (final, min-max) |\n\
         |---|---:|---:|---:|---:|---:|---|\n",
        summary.workload.name(),
        summary.workload.describe()
    );
    for median in &summary.configs {
        let limit = if median.key.pool == "adaptive" {
            format!(
                "{} ({}-{})",
                median.limit_final, median.limit_min, median.limit_max
            )
        } else {
            median.limit_final.to_string()
        };
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {limit} |",
            median.key.label(),
            median.ops_per_sec,
            median.latency_p50_ms,
            median.latency_p99_ms,
            median.wait_p99_ms,
            median.errors,
        );
    }
    comparison(out, summary);
}

/// The lines comparing adaptive with the fixed sizes, and its use times.
fn comparison(out: &mut String, summary: &Summary) {
    let parts: Vec<String> = summary
        .adaptive_vs
        .iter()
        .map(|versus| {
            format!(
                "{:.0}% of the throughput of fixed {}{} ({:.0} ops/s), p99 {:.2}× its p99",
                versus.throughput_pct,
                versus.fixed,
                if versus.best { " (best fixed)" } else { "" },
                versus.fixed_ops_per_sec,
                versus.p99_ratio
            )
        })
        .collect();
    if !parts.is_empty() {
        let _ = writeln!(out, "\nadaptive: {}.", parts.join("; "));
    }
    let adaptive = summary.configs.iter().find(|m| m.key.pool == "adaptive");
    if let Some(adaptive) = adaptive {
        let ms = |value: Option<f64>| value.map_or("none".to_owned(), |v| format!("{v:.3} ms"));
        let _ = writeln!(
            out,
            "adaptive use time at the end: baseline {}, recent {}.",
            ms(adaptive.baseline_use_ms),
            ms(adaptive.recent_use_ms)
        );
    }
}
