//! `tidewater-bench`: the same workload on tidewater and on its peer pools
//! (deadpool, bb8, mobc, qp), in one process, one table per regime (or one
//! JSON object a line with `--json`).
//!
//! Every pool runs over the same no-op backend ([`Noop`](peers::Noop)):
//! opening, checking and recycling a connection do nothing and return at
//! once, so what is measured is each pool's own checkout-and-return path,
//! in the three regimes a service meets ([`noop`]): **warm** (every
//! connection idle, nobody queues), **cold** (the pool built and used at
//! once, callers queueing from the first moment; median and worst run) and
//! **yield** (each task yields while it holds its connection, so every
//! `get()` queues and every return is a hand-off). Runs alternate between
//! pools, so that a slow phase of the machine does not land on one pool
//! only.
//!
//! ```text
//! cargo run --release -p tidewater-bench -- --quick --pools tidewater,bb8
//! cargo run --release -p tidewater-bench -- --runs 7 --regimes cold,yield
//! ```
//!
//! `tidewater-bench scaling` measures how a checkout and a hand-off cost as
//! the pool and the queue grow, and the memory per idle connection and per
//! waiter: see the [`scaling`] module.
//!
//! `tidewater-bench postgres` runs tidewater-postgres and its peers
//! (deadpool-postgres, bb8-postgres, sqlx) against a real PostgreSQL server
//! instead: see the [`postgres`] module. `tidewater-bench drill` runs the
//! fault drill of `tidewater-lab drill` on each PostgreSQL pool behind the same
//! small HTTP service: see the [`drill`] module.
//!
//! `tidewater-bench sizing` runs fixed pool sizes and the adaptive limit
//! side by side on a CPU-bound query, on hot-row transfers (both on a
//! private PostgreSQL) and on SQLite writes: see the [`sizing`] module.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use serde::Serialize;

mod drill;
mod noop;
mod peers;
mod postgres;
mod scaling;
mod sizing;

use noop::Regime;
use peers::PoolKind;

/// Acquire timeout of every pool that has one: far above any wait here, so
/// it never fires, but no pool waits without a bound.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait the histograms tell apart, in nanoseconds (a minute).
const MAX_WAIT_NS: u64 = 60_000_000_000;

/// Compares tidewater with deadpool, bb8, mobc and qp on a no-op backend,
/// printing a table per regime.
#[derive(Parser, Debug)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Args {
    /// Another benchmark instead of the no-op one.
    #[command(subcommand)]
    command: Option<Command>,
    /// A smoke run: 2^14 operations a configuration instead of 2^20 (and a
    /// tenth of the yield regime's gets), and one run unless `--runs` says
    /// otherwise.
    #[arg(long)]
    quick: bool,
    /// The pools to run, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pools: Vec<PoolKind>,
    /// The regimes to run, comma-separated (default: warm, cold, yield).
    #[arg(long, value_enum, value_delimiter = ',')]
    regimes: Vec<Regime>,
    /// Runs of each configuration (default 5, or 1 with `--quick`).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    runs: Option<u32>,
    /// One JSON object a line instead of tables.
    #[arg(long)]
    json: bool,
    /// Runs under a tracing subscriber at INFO (the registry and a fmt
    /// layer writing nowhere), as a service that logs would: what the
    /// pools' spans cost, tidewater's `db.client.connection.wait` among
    /// them. Any benchmark.
    #[arg(long, global = true)]
    trace: bool,
}

/// The benchmarks besides the default (no-op) one.
#[derive(clap::Subcommand, Debug)]
enum Command {
    /// How the cost of a checkout and of a hand-off grows with the pool
    /// size and the queue, and the memory per idle connection and per
    /// waiter.
    Scaling(scaling::ScalingArgs),
    /// tidewater-postgres against deadpool-postgres, bb8-postgres, sqlx and
    /// 50 dedicated connections on a PostgreSQL server: 1000 tasks, a pool
    /// of 50, get + `SELECT 1` + drop.
    Postgres(postgres::PgArgs),
    /// The fault drill of `tidewater-lab drill` on tidewater-postgres,
    /// deadpool-postgres, bb8-postgres and sqlx, each behind the same HTTP
    /// service on a private PostgreSQL: restart, crash, hang, terminated
    /// sessions, a full server; failures, longest wait and recovery side by
    /// side.
    Drill(drill::DrillArgs),
    /// Fixed pool sizes (2 to 200) against the adaptive limit, 1000 tasks,
    /// on a CPU-bound query and on hot-row transfers on a private
    /// PostgreSQL, and on SQLite writes: throughput, latency, wait and the
    /// limit adaptive found, one table per workload.
    Sizing(sizing::SizingArgs),
}

/// An empty histogram of waits in nanoseconds, 3 significant digits.
fn wait_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_WAIT_NS, 3).expect("valid histogram bounds")
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
    if args.trace {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
            .with(tracing_subscriber::filter::LevelFilter::INFO);
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    }
    match args.command {
        None => {
            noop::run(plan(args)).await;
            ExitCode::SUCCESS
        }
        Some(Command::Scaling(scaling)) => {
            exit("scaling", scaling::run(scaling).await.map_err(Into::into))
        }
        Some(Command::Postgres(pg)) => exit("postgres", postgres::run(pg).await),
        Some(Command::Drill(drill)) => exit("drill", drill::run(drill).await),
        Some(Command::Sizing(sizing)) => exit("sizing", sizing::run(sizing).await),
    }
}

/// The no-op benchmark's plan from the command line.
fn plan(args: Args) -> noop::Plan {
    fn or_all<T: Clone>(chosen: Vec<T>, all: &[T]) -> Vec<T> {
        if chosen.is_empty() {
            all.to_vec()
        } else {
            chosen
        }
    }
    noop::Plan {
        pools: or_all(args.pools, PoolKind::value_variants()),
        regimes: or_all(args.regimes, Regime::value_variants()),
        ops: if args.quick { 1 << 14 } else { 1 << 20 },
        yield_divisor: if args.quick { 10 } else { 1 },
        runs: args.runs.unwrap_or(if args.quick { 1 } else { 5 }),
        json: args.json,
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
