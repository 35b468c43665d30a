//! The no-op benchmark: each pool's own checkout-and-return path over the
//! [`Noop`](crate::peers::Noop) backend, in the three regimes a service
//! meets.
//!
//! - **warm**: every connection is open and idle before timing starts, and
//!   the workers start together on a barrier. A get-then-drop holds a
//!   connection across no `.await`, so with two cores nobody queues: this
//!   is the uncontended path. Plus, at [`FAIRNESS`], how long each `get()`
//!   waited.
//! - **cold**: the pool is built and used at once: no warm-up, no barrier.
//!   The first workers find no connection and queue while they open, and
//!   whether the queue ever drains again depends on the pool: a pool that
//!   keeps handing connections through its queue (a convoy) is measured
//!   here. Run to run it varies, so the table gives the median and the
//!   worst run.
//! - **yield**: every task yields once (`tokio::task::yield_now`) while it
//!   holds its connection, so other tasks run and find none: every `get()`
//!   queues, and each return hands a connection to a waiter. Throughput and
//!   the waits.
//!
//! Runs alternate between pools, so that a slow phase of the machine does
//! not land on one pool only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::Barrier;

use crate::peers::{BenchPool, OnPool, PoolKind};
use crate::{median, micros_at, print, wait_histogram};

/// (pool size, workers) of the warm and cold throughput measurements.
pub(crate) const THROUGHPUT: [(u32, u32); 5] = [(8, 8), (8, 64), (16, 256), (50, 50), (50, 1024)];
/// (pool size, workers) of the warm wait measurement.
pub(crate) const FAIRNESS: (u32, u32) = (8, 256);
/// (pool size, tasks, gets per task) of the yield measurement.
pub(crate) const YIELDING: [(u32, u32, u64); 2] = [(8, 256, 400), (50, 1024, 100)];

/// A regime of the no-op benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Regime {
    /// Every connection open and idle, workers started together.
    Warm,
    /// Pool built and used at once: callers queue from the first moment.
    Cold,
    /// Each task yields while it holds its connection: every get queues.
    Yield,
}

/// One workload on one pool.
#[derive(Clone, Copy, Debug)]
struct Load {
    regime: Regime,
    /// The pool's maximum size.
    size: u32,
    /// Tasks sharing the operations.
    workers: u32,
    /// Get-then-drop operations in all.
    ops: u64,
    /// Whether to record each `get()`'s wait; off for the throughput runs,
    /// so that reading the clock is not timed.
    record_waits: bool,
}

/// What one run of a [`Load`] measured.
struct Run {
    /// From the workers' start to the last one's end.
    elapsed: Duration,
    /// Each `get()`'s wait in nanoseconds, all workers merged, when recorded.
    waits: Option<Histogram<u64>>,
}

/// Each `get()`'s wait in nanoseconds, as a worker records them: a plain
/// vector, so that recording costs the timed loop a push, and the
/// histogram is built once the run is over.
type Waits = Vec<u64>;

impl OnPool for Load {
    type Output = Run;

    async fn run<P: BenchPool>(self) -> Run {
        let pool = P::build(self.size).await;
        let barrier = match self.regime {
            Regime::Warm => {
                warm_up(&pool, self.size).await;
                Some(Arc::new(Barrier::new(self.workers as usize + 1)))
            }
            Regime::Cold | Regime::Yield => None,
        };
        let workers = u64::from(self.workers);
        let hold_across_yield = self.regime == Regime::Yield;
        let began = Instant::now();
        let handles: Vec<_> = (0..workers)
            .map(|i| {
                let ops = self.ops / workers + u64::from(i < self.ops % workers);
                let waits = self
                    .record_waits
                    .then(|| Waits::with_capacity(self.ops.div_ceil(workers) as usize));
                let (pool, barrier) = (pool.clone(), barrier.clone());
                tokio::spawn(async move {
                    if let Some(barrier) = barrier {
                        barrier.wait().await;
                    }
                    worker(&pool, ops, hold_across_yield, waits).await
                })
            })
            .collect();
        let began = match barrier {
            Some(barrier) => {
                barrier.wait().await;
                Instant::now()
            }
            None => began,
        };
        let mut results = Vec::with_capacity(handles.len());
        for handle in handles {
            results.push(handle.await.expect("a worker panicked"));
        }
        let elapsed = began.elapsed();
        let waits = self.record_waits.then(|| {
            let mut all = wait_histogram();
            for wait in results.into_iter().flatten().flatten() {
                all.saturating_record(wait);
            }
            all
        });
        Run { elapsed, waits }
    }
}

/// Opens every connection before timing: `size` out at once, then back;
/// then lets pools that return connections in the background (mobc) settle.
async fn warm_up<P: BenchPool>(pool: &P, size: u32) {
    let mut held = Vec::with_capacity(size as usize);
    for _ in 0..size {
        held.push(pool.checkout().await);
    }
    drop(held);
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// One worker: `ops` get-then-drop operations, yielding once while holding
/// each connection when `hold_across_yield`, and recording each `get()`'s
/// wait in `waits` if given.
async fn worker<P: BenchPool>(
    pool: &P,
    ops: u64,
    hold_across_yield: bool,
    mut waits: Option<Waits>,
) -> Option<Waits> {
    for _ in 0..ops {
        let asked = waits.is_some().then(Instant::now);
        let conn = pool.checkout().await;
        if let (Some(waits), Some(asked)) = (waits.as_mut(), asked) {
            waits.push(u64::try_from(asked.elapsed().as_nanos()).unwrap_or(u64::MAX));
        }
        if hold_across_yield {
            tokio::task::yield_now().await;
        }
        drop(conn);
    }
    waits
}

/// How long one run may take before its pool is taken to hang (qp does, in
/// the yield regime: a lost wake-up) and is left out of the regime.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Runs `load` `runs` times on each of `pools`, alternating between pools;
/// returns each pool's runs, in the order of `pools`, or `None` for a pool
/// that hung.
async fn run_all(pools: &[PoolKind], load: Load, runs: u32) -> Vec<Option<Vec<Run>>> {
    let mut all: Vec<Option<Vec<Run>>> = pools.iter().map(|_| Some(Vec::new())).collect();
    for _ in 0..runs {
        for (pool, its_runs) in pools.iter().zip(&mut all) {
            let Some(runs) = its_runs else { continue };
            match tokio::time::timeout(RUN_LIMIT, pool.run(load)).await {
                Ok(run) => runs.push(run),
                Err(_) => {
                    eprintln!(
                        "{}: a {:?} run at S = {}, W = {} did not end within {RUN_LIMIT:?}; left out",
                        pool.name(),
                        load.regime,
                        load.size,
                        load.workers
                    );
                    *its_runs = None;
                }
            }
        }
    }
    all
}

/// One output line: the regime, the pool and configuration, the figures.
#[derive(Serialize)]
struct Line {
    regime: Regime,
    pool: PoolKind,
    pool_size: u32,
    workers: u32,
    /// Median over the runs of get-then-drop operations per second.
    ops_per_sec: u64,
    /// The slowest run's operations per second.
    ops_per_sec_worst: u64,
    /// Every run's operations per second, in order.
    ops_per_sec_each: Vec<u64>,
    /// Percentiles of the `get()` waits over all runs, when recorded.
    #[serde(flatten)]
    waits: Option<WaitFigures>,
}

/// Percentiles of `get()` waits, in microseconds.
#[derive(Clone, Copy, Serialize)]
struct WaitFigures {
    wait_p50_us: f64,
    wait_p99_us: f64,
    wait_p999_us: f64,
    wait_p9999_us: f64,
}

impl WaitFigures {
    fn of(histogram: &Histogram<u64>) -> Self {
        Self {
            wait_p50_us: micros_at(histogram, 0.5),
            wait_p99_us: micros_at(histogram, 0.99),
            wait_p999_us: micros_at(histogram, 0.999),
            wait_p9999_us: micros_at(histogram, 0.9999),
        }
    }
}

/// What the no-op benchmark runs.
pub(crate) struct Plan {
    pub(crate) pools: Vec<PoolKind>,
    pub(crate) regimes: Vec<Regime>,
    /// Operations per configuration in the warm and cold regimes.
    pub(crate) ops: u64,
    /// Divides the yield regime's gets per task (1, or more for a smoke run).
    pub(crate) yield_divisor: u64,
    pub(crate) runs: u32,
    /// JSON lines instead of tables.
    pub(crate) json: bool,
}

/// Runs the plan, printing a table (or JSON lines) per regime.
pub(crate) async fn run(plan: Plan) {
    for &regime in &plan.regimes {
        let mut lines = Vec::new();
        let mut measure = async |size, workers, ops, record_waits| {
            let load = Load {
                regime,
                size,
                workers,
                ops,
                record_waits,
            };
            for (&pool, its_runs) in plan
                .pools
                .iter()
                .zip(run_all(&plan.pools, load, plan.runs).await)
            {
                if let Some(its_runs) = its_runs {
                    lines.push(line(load, pool, ops, &its_runs));
                }
            }
        };
        match regime {
            Regime::Warm | Regime::Cold => {
                for (size, workers) in THROUGHPUT {
                    measure(size, workers, plan.ops, false).await;
                }
                if regime == Regime::Warm {
                    let (size, workers) = FAIRNESS;
                    measure(size, workers, plan.ops, true).await;
                }
            }
            Regime::Yield => {
                for (size, tasks, gets) in YIELDING {
                    let gets = (gets / plan.yield_divisor).max(1);
                    measure(size, tasks, u64::from(tasks) * gets, true).await;
                }
            }
        }
        if plan.json {
            lines.iter().for_each(print);
        } else {
            println!("{}", table(regime, &plan.pools, &lines));
        }
    }
}

fn line(load: Load, pool: PoolKind, ops: u64, runs: &[Run]) -> Line {
    let rates: Vec<f64> = runs
        .iter()
        .map(|run| ops as f64 / run.elapsed.as_secs_f64())
        .collect();
    let waits = load.record_waits.then(|| {
        let mut all = wait_histogram();
        for run in runs {
            all.add(run.waits.as_ref().expect("waits recorded"))
                .expect("histograms with the same bounds");
        }
        WaitFigures::of(&all)
    });
    Line {
        regime: load.regime,
        pool,
        pool_size: load.size,
        workers: load.workers,
        ops_per_sec: median(rates.clone()).round() as u64,
        ops_per_sec_worst: rates.iter().copied().fold(f64::INFINITY, f64::min).round() as u64,
        ops_per_sec_each: rates.iter().map(|rate| rate.round() as u64).collect(),
        waits,
    }
}

/// Millions of operations per second, two decimals.
fn millions(rate: u64) -> String {
    format!("{:.2} M", rate as f64 / 1e6)
}

/// A markdown table of one regime's lines: a row per configuration with a
/// column per pool, then (where waits were recorded) a row per pool and
/// configuration with the wait percentiles. Ratios are against deadpool.
fn table(regime: Regime, pools: &[PoolKind], lines: &[Line]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let what = match regime {
        Regime::Warm => "warm: median of the runs",
        Regime::Cold => "cold (queued from the start): median / worst run",
        Regime::Yield => "yield while holding (every get queues): median / worst run",
    };
    let _ = writeln!(out, "\n{what}, get-then-drop operations per second\n");
    let mut header = String::from("| S, W |");
    let mut rule = String::from("|---|");
    for pool in pools {
        let _ = write!(header, " {} |", pool.name());
        rule.push_str("---|");
    }
    let deadpool_compared =
        pools.contains(&PoolKind::Tidewater) && pools.contains(&PoolKind::Deadpool);
    if deadpool_compared {
        header.push_str(" tidewater / deadpool |");
        rule.push_str("---|");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    let mut configs: Vec<(u32, u32, bool)> = Vec::new();
    for line in lines {
        let config = (line.pool_size, line.workers, line.waits.is_some());
        if !configs.contains(&config) {
            configs.push(config);
        }
    }
    let find = |pool, (size, workers, waits): (u32, u32, bool)| {
        lines.iter().find(|line| {
            line.pool == pool
                && line.pool_size == size
                && line.workers == workers
                && line.waits.is_some() == waits
        })
    };
    for &config in &configs {
        if regime == Regime::Warm && config.2 {
            continue; // the fairness run: waits below
        }
        let mut row = format!("| {}, {} |", config.0, config.1);
        for &pool in pools {
            let cell = find(pool, config).map_or_else(String::new, |line| match regime {
                Regime::Warm => millions(line.ops_per_sec),
                Regime::Cold | Regime::Yield => format!(
                    "{} / {}",
                    millions(line.ops_per_sec),
                    millions(line.ops_per_sec_worst)
                ),
            });
            let _ = write!(row, " {cell} |");
        }
        if deadpool_compared {
            let ours = find(PoolKind::Tidewater, config);
            let theirs = find(PoolKind::Deadpool, config);
            if let (Some(ours), Some(theirs)) = (ours, theirs) {
                let ratio = |a: u64, b: u64| a as f64 / b.max(1) as f64;
                let cell = match regime {
                    Regime::Warm => format!("{:.2}x", ratio(ours.ops_per_sec, theirs.ops_per_sec)),
                    Regime::Cold | Regime::Yield => format!(
                        "{:.2}x / {:.2}x worst",
                        ratio(ours.ops_per_sec, theirs.ops_per_sec),
                        ratio(ours.ops_per_sec_worst, theirs.ops_per_sec_worst)
                    ),
                };
                let _ = write!(row, " {cell} |");
            }
        }
        let _ = writeln!(out, "{row}");
    }
    let waited: Vec<&Line> = lines.iter().filter(|line| line.waits.is_some()).collect();
    if !waited.is_empty() {
        let _ = writeln!(
            out,
            "\n| pool | S, W | wait p50 | wait p99 | wait p99.9 | wait p99.99 |\n|---|---|---|---|---|---|"
        );
        for line in waited {
            let waits = line.waits.expect("filtered");
            let _ = writeln!(
                out,
                "| {} | {}, {} | {:.2} µs | {:.2} µs | {:.2} µs | {:.2} µs |",
                line.pool.name(),
                line.pool_size,
                line.workers,
                waits.wait_p50_us,
                waits.wait_p99_us,
                waits.wait_p999_us,
                waits.wait_p9999_us
            );
        }
    }
    out
}
