//! `tidewater-bench`: the same workload on tidewater and on its peer pools
//! (deadpool, bb8, mobc, qp), in one process, one JSON object a line.
//!
//! Every pool runs over the same no-op backend ([`Noop`]): opening, checking
//! and recycling a connection do nothing and return at once, so what is
//! measured is each pool's own checkout-and-return path.
//!
//! - **throughput**: `2^20` get-then-drop operations split over W worker
//!   tasks on a pool of size S, for each (S, W) in [`THROUGHPUT`]; the median
//!   of the runs.
//! - **fairness**: at (S, W) = [`FAIRNESS`], the p50, p99 and p99.99 of how
//!   long each `get()` waited, over all runs.
//!
//! Each run builds a fresh pool, checks out S connections at once and gives
//! them back (so opening connections is never timed), then releases all
//! workers together. Runs alternate between pools, so that a slow phase of
//! the machine does not land on one pool only.
//!
//! ```text
//! cargo run --release -p tidewater-bench -- --quick --pools tidewater,bb8
//! ```
//!
//! `tidewater-bench postgres` runs tidewater-postgres and its peers
//! (deadpool-postgres, bb8-postgres, sqlx) against a real PostgreSQL server
//! instead: see the [`postgres`] module. `tidewater-bench drill` runs the
//! fault drill of `tidewater drill` on each PostgreSQL pool behind the same
//! small HTTP service: see the [`drill`] module.

use std::convert::Infallible;
use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::Barrier;

mod drill;
mod postgres;

/// (pool size, workers) of the throughput measurements.
const THROUGHPUT: [(u32, u32); 5] = [(8, 8), (8, 64), (16, 256), (50, 50), (50, 1024)];
/// (pool size, workers) of the fairness measurement.
const FAIRNESS: (u32, u32) = (8, 256);
/// Acquire timeout of every pool that has one: far above any wait here, so
/// it never fires, but no pool waits without a bound.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait the histograms tell apart, in nanoseconds (a minute).
const MAX_WAIT_NS: u64 = 60_000_000_000;

/// Compares tidewater with deadpool, bb8, mobc and qp on a no-op backend,
/// printing one JSON object a line.
#[derive(Parser, Debug)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Args {
    /// Another benchmark instead of the no-op one.
    #[command(subcommand)]
    command: Option<Command>,
    /// A smoke run: 2^14 operations a configuration instead of 2^20, and one
    /// run unless `--runs` says otherwise.
    #[arg(long)]
    quick: bool,
    /// The pools to run, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pools: Vec<PoolKind>,
    /// Runs of each configuration (default 5, or 1 with `--quick`).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    runs: Option<u32>,
}

/// The benchmarks besides the default (no-op) one.
#[derive(clap::Subcommand, Debug)]
enum Command {
    /// tidewater-postgres against deadpool-postgres, bb8-postgres, sqlx and
    /// 50 dedicated connections on a PostgreSQL server: 1000 tasks, a pool
    /// of 50, get + `SELECT 1` + drop.
    Postgres(postgres::PgArgs),
    /// The fault drill of `tidewater drill` on tidewater-postgres,
    /// deadpool-postgres, bb8-postgres and sqlx, each behind the same HTTP
    /// service on a private PostgreSQL: restart, crash, hang, terminated
    /// sessions, a full server; failures, longest wait and recovery side by
    /// side.
    Drill(drill::DrillArgs),
}

/// A pool under comparison; its name on the command line and in the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum PoolKind {
    /// This project's pool.
    Tidewater,
    /// `deadpool::managed`.
    Deadpool,
    /// `bb8`.
    Bb8,
    /// `mobc`.
    Mobc,
    /// `qp` (Quick Pool).
    Qp,
}

impl PoolKind {
    /// Runs `load` once on a fresh pool of this kind.
    async fn measure(self, load: Load) -> Run {
        match self {
            Self::Tidewater => measure::<tidewater::Pool<Noop>>(load).await,
            Self::Deadpool => measure::<deadpool::managed::Pool<Noop>>(load).await,
            Self::Bb8 => measure::<bb8::Pool<Noop>>(load).await,
            Self::Mobc => measure::<mobc::Pool<Noop>>(load).await,
            Self::Qp => measure::<qp::Pool<Noop>>(load).await,
        }
    }
}

/// One workload: `ops` get-then-drop operations over `workers` tasks on a
/// pool of at most `size` connections.
#[derive(Clone, Copy, Debug)]
struct Load {
    /// The pool's maximum size.
    size: u32,
    /// Worker tasks sharing the operations.
    workers: u32,
    /// Operations in all.
    ops: u64,
    /// Whether to record each `get()`'s wait (the fairness measurement);
    /// off for throughput, so that reading the clock is not timed.
    record_waits: bool,
}

/// What one run of a [`Load`] measured.
struct Run {
    /// From the workers' start to the last one's end.
    elapsed: Duration,
    /// Each `get()`'s wait in nanoseconds, all workers merged, when recorded.
    waits: Option<Histogram<u64>>,
}

/// The backend every pool runs on: a connection is a number, and opening,
/// checking and recycling one do nothing and return at once.
#[derive(Clone, Copy, Debug)]
struct Noop;

/// A [`Noop`] connection.
type Conn = u64;

impl tidewater::Manager for Noop {
    type Connection = Conn;
    type Error = Infallible;

    async fn connect(&self) -> Result<Conn, Infallible> {
        Ok(0)
    }

    async fn validate(&self, _conn: &mut Conn) -> Result<(), Infallible> {
        Ok(())
    }
}

impl deadpool::managed::Manager for Noop {
    type Type = Conn;
    type Error = Infallible;

    async fn create(&self) -> Result<Conn, Infallible> {
        Ok(0)
    }

    async fn recycle(
        &self,
        _conn: &mut Conn,
        _metrics: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Infallible> {
        Ok(())
    }
}

impl bb8::ManageConnection for Noop {
    type Connection = Conn;
    type Error = Infallible;

    async fn connect(&self) -> Result<Conn, Infallible> {
        Ok(0)
    }

    async fn is_valid(&self, _conn: &mut Conn) -> Result<(), Infallible> {
        Ok(())
    }

    fn has_broken(&self, _conn: &mut Conn) -> bool {
        false
    }
}

#[mobc::async_trait]
impl mobc::Manager for Noop {
    type Connection = Conn;
    type Error = Infallible;

    async fn connect(&self) -> Result<Conn, Infallible> {
        Ok(0)
    }

    async fn check(&self, conn: Conn) -> Result<Conn, Infallible> {
        Ok(conn)
    }
}

#[qp::async_trait]
impl qp::resource::Manage for Noop {
    type Output = Conn;
    type Error = Infallible;

    async fn try_create(&self) -> Result<Conn, Infallible> {
        Ok(0)
    }
}

/// A pool as the benchmark drives it: built over [`Noop`] with the settings
/// that make the comparison fair, and checked out from.
trait BenchPool: Clone + Send + Sync + 'static {
    /// A checked-out connection; dropping it gives it back.
    type Guard<'a>
    where
        Self: 'a;

    /// A pool of at most `size` connections, none open yet.
    fn build(size: u32) -> impl Future<Output = Self>;

    /// Takes a connection, waiting for one if needed.
    fn checkout(&self) -> impl Future<Output = Self::Guard<'_>> + Send;
}

/// The connection in `result`; a no-op backend never fails, so an error is a
/// bug worth stopping for.
fn served<T, E: std::fmt::Debug>(result: Result<T, E>) -> T {
    result.expect("a pool over the no-op backend failed a checkout")
}

impl BenchPool for tidewater::Pool<Noop> {
    type Guard<'a> = tidewater::PooledConnection<Noop>;

    async fn build(size: u32) -> Self {
        // Defaults but the size. `acquire_timeout` is 30 s already, and a
        // checkout validates only a connection idle longer than
        // `validate_after` (500 ms), which never happens while timing.
        let config = tidewater::PoolConfig {
            max_size: size,
            ..Default::default()
        };
        tidewater::Pool::new(Noop, config).expect("a valid configuration")
    }

    async fn checkout(&self) -> Self::Guard<'_> {
        served(self.get().await)
    }
}

impl BenchPool for deadpool::managed::Pool<Noop> {
    type Guard<'a> = deadpool::managed::Object<Noop>;

    async fn build(size: u32) -> Self {
        // deadpool calls `Manager::recycle` on every checkout and has no
        // switch to skip it; here it returns at once. `wait_timeout` bounds
        // the wait for a free slot (it needs the tokio runtime set).
        deadpool::managed::Pool::builder(Noop)
            .max_size(size as usize)
            .wait_timeout(Some(ACQUIRE_TIMEOUT))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .expect("a valid configuration")
    }

    async fn checkout(&self) -> Self::Guard<'_> {
        served(self.get().await)
    }
}

impl BenchPool for bb8::Pool<Noop> {
    type Guard<'a> = bb8::PooledConnection<'a, Noop>;

    async fn build(size: u32) -> Self {
        // `test_on_check_out(false)`: bb8 otherwise calls `is_valid` on every
        // checkout (on by default). `connection_timeout` is how long `get()`
        // waits. No `min_idle`, like the others.
        bb8::Pool::builder()
            .max_size(size)
            .test_on_check_out(false)
            .connection_timeout(ACQUIRE_TIMEOUT)
            .build(Noop)
            .await
            .unwrap_or_else(|never| match never {})
    }

    async fn checkout(&self) -> Self::Guard<'_> {
        served(self.get().await)
    }
}

impl BenchPool for mobc::Pool<Noop> {
    type Guard<'a> = mobc::Connection<Noop>;

    async fn build(size: u32) -> Self {
        // `test_on_check_out(false)`: mobc otherwise calls `Manager::check`
        // on every checkout (on by default; `health_check_interval` only
        // spaces those checks out). `max_idle(size)`: mobc keeps only 2 idle
        // connections by default and closes the others when they come back,
        // which would time connection opening. `get_timeout` bounds `get()`.
        mobc::Pool::builder()
            .max_open(u64::from(size))
            .max_idle(u64::from(size))
            .test_on_check_out(false)
            .get_timeout(Some(ACQUIRE_TIMEOUT))
            .build(Noop)
    }

    async fn checkout(&self) -> Self::Guard<'_> {
        served(self.get().await)
    }
}

impl BenchPool for qp::Pool<Noop> {
    type Guard<'a> = qp::Pooled<'a, Noop>;

    async fn build(size: u32) -> Self {
        // qp has no acquire timeout (it waits forever) and no options but
        // the size.
        qp::Pool::new(Noop, size as usize)
    }

    async fn checkout(&self) -> Self::Guard<'_> {
        // `acquire_unchecked`: plain `acquire` calls `Manage::validate` on
        // every checkout (a boxed `async_trait` future); this skips it.
        served(self.acquire_unchecked().await)
    }
}

/// An empty histogram of waits in nanoseconds, 3 significant digits.
fn wait_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_WAIT_NS, 3).expect("valid histogram bounds")
}

/// Runs `load` once on a fresh pool of type `P`.
async fn measure<P: BenchPool>(load: Load) -> Run {
    let pool = P::build(load.size).await;
    // Warm up: `size` connections out at once, so that all are open before
    // timing starts; then give them back and let pools that return
    // connections in the background (mobc) settle.
    let mut held = Vec::with_capacity(load.size as usize);
    for _ in 0..load.size {
        held.push(pool.checkout().await);
    }
    drop(held);
    tokio::time::sleep(Duration::from_millis(20)).await;

    let workers = u64::from(load.workers);
    let start = Arc::new(Barrier::new(load.workers as usize + 1));
    let handles: Vec<_> = (0..workers)
        .map(|i| {
            let ops = load.ops / workers + u64::from(i < load.ops % workers);
            let waits = load.record_waits.then(wait_histogram);
            tokio::spawn(worker(pool.clone(), ops, start.clone(), waits))
        })
        .collect();
    start.wait().await;
    let began = Instant::now();
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        results.push(handle.await.expect("a worker panicked"));
    }
    let elapsed = began.elapsed();

    let waits = load.record_waits.then(|| {
        let mut all = wait_histogram();
        for waits in results.into_iter().flatten() {
            all.add(waits).expect("histograms with the same bounds");
        }
        all
    });
    Run { elapsed, waits }
}

/// One worker: waits for the start, then does `ops` get-then-drop
/// operations, recording each `get()`'s wait in `waits` if given.
async fn worker<P: BenchPool>(
    pool: P,
    ops: u64,
    start: Arc<Barrier>,
    mut waits: Option<Histogram<u64>>,
) -> Option<Histogram<u64>> {
    start.wait().await;
    for _ in 0..ops {
        let Some(waits) = waits.as_mut() else {
            drop(pool.checkout().await);
            continue;
        };
        let asked = Instant::now();
        let conn = pool.checkout().await;
        let waited = asked.elapsed();
        drop(conn);
        waits.saturating_record(u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX));
    }
    waits
}

/// Runs `load` `runs` times on each of `pools`, alternating between pools;
/// returns each pool's runs, in the order of `pools`.
async fn run_all(pools: &[PoolKind], load: Load, runs: u32) -> Vec<Vec<Run>> {
    let mut all: Vec<Vec<Run>> = pools.iter().map(|_| Vec::new()).collect();
    for _ in 0..runs {
        for (pool, its_runs) in pools.iter().zip(&mut all) {
            its_runs.push(pool.measure(load).await);
        }
    }
    all
}

/// One output line: which pool and configuration, then the figures.
#[derive(Serialize)]
struct Line<T> {
    /// The pool's name.
    pool: PoolKind,
    /// Its maximum size.
    pool_size: u32,
    /// Worker tasks.
    workers: u32,
    /// The measured figures.
    #[serde(flatten)]
    figures: T,
}

/// Figures of a throughput line.
#[derive(Serialize)]
struct Throughput {
    /// Median over the runs of operations per second.
    ops_per_sec: u64,
}

/// Figures of a fairness line: percentiles of `get()` waits, in
/// microseconds.
#[derive(Serialize)]
struct Waits {
    /// Median wait.
    wait_p50_us: f64,
    /// 99th percentile.
    wait_p99_us: f64,
    /// 99.99th percentile.
    wait_p9999_us: f64,
}

impl Waits {
    /// The percentiles of `histogram` (nanoseconds).
    fn of(histogram: &Histogram<u64>) -> Self {
        Self {
            wait_p50_us: micros_at(histogram, 0.5),
            wait_p99_us: micros_at(histogram, 0.99),
            wait_p9999_us: micros_at(histogram, 0.9999),
        }
    }
}

/// The value at `quantile` of `histogram` (nanoseconds), in microseconds.
fn micros_at(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1_000.0
}

/// Prints `line` as one line of JSON.
fn print(line: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string(line).expect("output serializes")
    );
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 0 {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        None => {
            noop(args).await;
            ExitCode::SUCCESS
        }
        Some(Command::Postgres(pg)) => exit("postgres", postgres::run(pg).await),
        Some(Command::Drill(drill)) => exit("drill", drill::run(drill).await),
    }
}

/// The exit code of subcommand `name`, after printing its error if any.
fn exit(name: &str, result: Result<(), postgres::BoxError>) -> ExitCode {
    let Err(error) = result else {
        return ExitCode::SUCCESS;
    };
    // The driver's messages leave their causes out ("db error").
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        message = format!("{message}: {inner}");
        cause = inner.source();
    }
    eprintln!("tidewater-bench {name}: {message}");
    ExitCode::FAILURE
}

/// The no-op benchmark: throughput at each of [`THROUGHPUT`], then
/// fairness at [`FAIRNESS`].
async fn noop(args: Args) {
    let ops: u64 = if args.quick { 1 << 14 } else { 1 << 20 };
    let runs = args.runs.unwrap_or(if args.quick { 1 } else { 5 });
    let pools = if args.pools.is_empty() {
        PoolKind::value_variants().to_vec()
    } else {
        args.pools
    };

    for (size, workers) in THROUGHPUT {
        let load = Load {
            size,
            workers,
            ops,
            record_waits: false,
        };
        for (&pool, its_runs) in pools.iter().zip(run_all(&pools, load, runs).await) {
            let rates = its_runs
                .iter()
                .map(|run| ops as f64 / run.elapsed.as_secs_f64())
                .collect();
            print(&Line {
                pool,
                pool_size: size,
                workers,
                figures: Throughput {
                    ops_per_sec: median(rates).round() as u64,
                },
            });
        }
    }

    let (size, workers) = FAIRNESS;
    let load = Load {
        size,
        workers,
        ops,
        record_waits: true,
    };
    for (&pool, its_runs) in pools.iter().zip(run_all(&pools, load, runs).await) {
        let mut waits = wait_histogram();
        for run in its_runs {
            let run_waits = run.waits.expect("waits recorded for fairness");
            waits
                .add(run_waits)
                .expect("histograms with the same bounds");
        }
        print(&Line {
            pool,
            pool_size: size,
            workers,
            figures: Waits::of(&waits),
        });
    }
}
