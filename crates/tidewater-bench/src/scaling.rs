//! `tidewater-bench scaling`: how the cost of a checkout and of a hand-off
//! grows with the pool and with the queue, and the memory a pool holds per
//! idle connection and per waiter.
//!
//! - **Checkout by pool size**: a pool of S connections (S from 1 to
//!   10 000), all open and idle; one task does get-then-drop in a loop. The
//!   time per operation.
//! - **Join and hand-off by queue length**: a pool of one connection, held;
//!   N callers (N from 10 to 100 000) call `get()` and are polled once, so
//!   all N wait (the time per join); then the connection is given back and
//!   goes from caller to caller through the whole queue, each taking it and
//!   giving it back at once (the time per hand-off). The callers are
//!   futures in one `FuturesUnordered` on one task, not tasks, so what is
//!   timed is the pool's work (and the wake), not the runtime's scheduling.
//!   tokio's cooperative budget is off for the measurement
//!   (`tokio::task::unconstrained`), so no pool's waits yield early.
//! - **Memory**: the growth of the process's resident memory with 10 000
//!   idle connections, and with 100 000 waiters (beyond the futures
//!   themselves, which are allocated before and whose size is given apart),
//!   each measured in a fresh process of this binary so that memory freed
//!   by an earlier measurement does not hide the growth.
//!
//! ```text
//! cargo run --release -p tidewater-bench -- scaling
//! cargo run --release -p tidewater-bench -- scaling --pools tidewater,deadpool --quick
//! ```

use std::future::{Future, poll_fn};
use std::task::Poll;
use std::time::Instant;

use clap::ValueEnum as _;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;

use crate::peers::{BenchPool, OnPool, PoolKind};

/// Pool sizes of the checkout measurement (and idle connections of the
/// memory one: the largest).
const SIZES: [u32; 5] = [1, 10, 100, 1_000, 10_000];
/// Queue lengths of the join and hand-off measurement (and waiters of the
/// memory one: the largest).
const QUEUES: [usize; 5] = [10, 100, 1_000, 10_000, 100_000];
/// Get-then-drop operations timed per pool size.
const CHECKOUTS: u64 = 1 << 18;

/// Arguments of `tidewater-bench scaling`.
#[derive(clap::Args, Debug)]
pub(crate) struct ScalingArgs {
    /// The pools to measure, comma-separated (default: tidewater, deadpool, bb8).
    #[arg(long, value_enum, value_delimiter = ',')]
    pools: Vec<PoolKind>,
    /// Smaller sizes and queues (up to 1 000) and fewer operations: a smoke run.
    #[arg(long)]
    quick: bool,
    /// One line of JSON per figure instead of tables.
    #[arg(long)]
    json: bool,
    /// Internal: measure the memory of one pool in this process and print it
    /// as JSON (the parent process runs each measurement in a child).
    #[arg(long, hide = true)]
    memory_of: Option<PoolKind>,
    /// Internal: which memory measurement `--memory-of` makes.
    #[arg(long, hide = true, value_enum, default_value = "idle")]
    memory_part: MemoryPart,
}

/// The cost of a checkout at one pool size.
struct CheckoutCost {
    size: u32,
    ops: u64,
}

impl OnPool for CheckoutCost {
    type Output = f64;

    async fn run<P: BenchPool>(self) -> f64 {
        let pool = P::build(self.size).await;
        let held: Vec<_> = poll_all((0..self.size).map(|_| pool.checkout())).await;
        drop(held);
        tokio::task::yield_now().await;
        tokio::task::unconstrained(async {
            let began = Instant::now();
            for _ in 0..self.ops {
                drop(pool.checkout().await);
            }
            began.elapsed().as_nanos() as f64 / self.ops as f64
        })
        .await
    }
}

/// Awaits every future of `futures` together, in order.
async fn poll_all<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut each: Vec<_> = futures.map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = each.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut pending = false;
        for (future, done) in each.iter_mut().zip(done.iter_mut()) {
            if done.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *done = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    done.into_iter()
        .map(|value| value.expect("all ready"))
        .collect()
}

/// The cost of joining the queue and of a hand-off at one queue length.
struct QueueCost {
    waiters: usize,
}

/// Nanoseconds per join and per hand-off.
struct QueueFigures {
    join_ns: f64,
    hand_off_ns: f64,
}

impl OnPool for QueueCost {
    type Output = QueueFigures;

    async fn run<P: BenchPool>(self) -> QueueFigures {
        let pool = P::build(1).await;
        tokio::task::unconstrained(async {
            let held = pool.checkout().await;
            let mut queue: FuturesUnordered<_> = (0..self.waiters)
                .map(|_| {
                    let pool = &pool;
                    async move { drop(pool.checkout().await) }
                })
                .collect();
            let began = Instant::now();
            poll_once(&mut queue).await;
            let join_ns = began.elapsed().as_nanos() as f64 / self.waiters as f64;
            assert_eq!(
                queue.len(),
                self.waiters,
                "no caller is served while the connection is held"
            );
            let began = Instant::now();
            drop(held);
            let mut served = 0;
            while queue.next().await.is_some() {
                served += 1;
            }
            assert_eq!(served, self.waiters);
            let hand_off_ns = began.elapsed().as_nanos() as f64 / self.waiters as f64;
            QueueFigures {
                join_ns,
                hand_off_ns,
            }
        })
        .await
    }
}

/// Polls every future of `queue` that is ready to be polled, once.
async fn poll_once<F: Future>(queue: &mut FuturesUnordered<F>) {
    poll_fn(|cx| {
        let polled = queue.poll_next_unpin(cx);
        assert!(
            polled.is_pending(),
            "no caller is served while the connection is held"
        );
        Poll::Ready(())
    })
    .await;
}

/// A memory measurement, each made in a process of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum MemoryPart {
    /// Resident memory growth per idle connection.
    Idle,
    /// Resident memory growth per waiter (the pool's side).
    Waiters,
    /// Size of the future a caller awaits in `get()`.
    GetFuture,
}

struct MeasureMemory {
    part: MemoryPart,
    idle: u32,
    waiters: usize,
}

impl OnPool for MeasureMemory {
    type Output = f64;

    async fn run<P: BenchPool>(self) -> f64 {
        match self.part {
            MemoryPart::Idle => {
                // Connections taken one at a time into a vector whose pages
                // are touched beforehand, then all given back.
                let pool = P::build(self.idle).await;
                let mut held: Vec<Option<P::Guard<'_>>> = Vec::new();
                held.resize_with(self.idle as usize, || None);
                let before = resident_bytes();
                for slot in &mut held {
                    *slot = Some(pool.checkout().await);
                }
                held.iter_mut().for_each(|slot| drop(slot.take()));
                tokio::task::yield_now().await;
                drop(held);
                (resident_bytes() - before) / f64::from(self.idle)
            }
            MemoryPart::Waiters => {
                let pool = P::build(1).await;
                let held = pool.checkout().await;
                tokio::task::unconstrained(async {
                    let mut queue: FuturesUnordered<_> = (0..self.waiters)
                        .map(|_| {
                            let pool = &pool;
                            async move { drop(pool.checkout().await) }
                        })
                        .collect();
                    let before = resident_bytes();
                    poll_once(&mut queue).await;
                    let per_waiter = (resident_bytes() - before) / self.waiters as f64;
                    drop(held);
                    while queue.next().await.is_some() {}
                    per_waiter
                })
                .await
            }
            MemoryPart::GetFuture => {
                let pool = P::build(1).await;
                std::mem::size_of_val(&pool.checkout()) as f64
            }
        }
    }
}

/// The process's resident memory, in bytes (Linux).
fn resident_bytes() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0
}

/// Runs one memory measurement of `pool` in a child process of this binary.
fn memory_in_child(pool: PoolKind, part: MemoryPart, quick: bool) -> Result<f64, String> {
    let exe = std::env::current_exe().map_err(|error| error.to_string())?;
    let mut command = std::process::Command::new(exe);
    command.args(["scaling", "--memory-of", pool.name(), "--memory-part"]);
    command.arg(
        part.to_possible_value()
            .expect("no skipped variant")
            .get_name(),
    );
    if quick {
        command.arg("--quick");
    }
    let output = command.output().map_err(|error| error.to_string())?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|error| format!("{pool:?} {part:?}: {error}"))
}

/// One JSON line of the scaling figures.
#[derive(Serialize)]
struct Figure {
    pool: PoolKind,
    measure: &'static str,
    at: u64,
    value: f64,
    unit: &'static str,
}

/// Runs `tidewater-bench scaling`.
pub(crate) async fn run(args: ScalingArgs) -> Result<(), String> {
    let (sizes, queues, ops): (&[u32], &[usize], u64) = if args.quick {
        (&SIZES[..4], &QUEUES[..3], CHECKOUTS / 16)
    } else {
        (&SIZES, &QUEUES, CHECKOUTS)
    };
    let (idle, waiters) = (
        *sizes.last().expect("sizes"),
        *queues.last().expect("queues"),
    );
    if let Some(pool) = args.memory_of {
        let part = args.memory_part;
        println!(
            "{}",
            pool.run(MeasureMemory {
                part,
                idle,
                waiters
            })
            .await
        );
        return Ok(());
    }
    let pools = if args.pools.is_empty() {
        vec![PoolKind::Tidewater, PoolKind::Deadpool, PoolKind::Bb8]
    } else {
        args.pools
    };
    let mut figures = Vec::new();
    for &pool in &pools {
        for &size in sizes {
            let ns = pool.run(CheckoutCost { size, ops }).await;
            figures.push(Figure {
                pool,
                measure: "checkout",
                at: u64::from(size),
                value: ns,
                unit: "ns",
            });
        }
        for &waiters in queues {
            let cost = pool.run(QueueCost { waiters }).await;
            let at = waiters as u64;
            figures.push(Figure {
                pool,
                measure: "join",
                at,
                value: cost.join_ns,
                unit: "ns",
            });
            figures.push(Figure {
                pool,
                measure: "hand_off",
                at,
                value: cost.hand_off_ns,
                unit: "ns",
            });
        }
        for (part, measure, at) in [
            (
                MemoryPart::Idle,
                "memory_per_idle_connection",
                u64::from(idle),
            ),
            (MemoryPart::Waiters, "memory_per_waiter", waiters as u64),
            (MemoryPart::GetFuture, "get_future_size", 0),
        ] {
            let value = memory_in_child(pool, part, args.quick)?;
            figures.push(Figure {
                pool,
                measure,
                at,
                value,
                unit: "bytes",
            });
        }
    }
    if args.json {
        figures.iter().for_each(crate::print);
    } else {
        print_tables(&pools, sizes, queues, &figures);
    }
    Ok(())
}

fn print_tables(pools: &[PoolKind], sizes: &[u32], queues: &[usize], figures: &[Figure]) {
    let value = |pool, measure, at| {
        figures
            .iter()
            .find(|figure| figure.pool == pool && figure.measure == measure && figure.at == at)
            .map_or(f64::NAN, |figure| figure.value)
    };
    let names: Vec<&str> = pools.iter().map(|pool| pool.name()).collect();
    let columns = |title: &str| {
        format!(
            "| {title} | {} |\n|---|{}",
            names.join(" | "),
            "---|".repeat(pools.len())
        )
    };
    println!(
        "\nOne get-then-drop on an idle pool of S connections, ns\n\n{}",
        columns("S")
    );
    for &size in sizes {
        let cells: Vec<String> = pools
            .iter()
            .map(|&pool| format!("{:.0}", value(pool, "checkout", u64::from(size))))
            .collect();
        println!("| {size} | {} |", cells.join(" | "));
    }
    println!(
        "\nJoining the queue / one hand-off, with N callers waiting, ns\n\n{}",
        columns("N")
    );
    for &waiters in queues {
        let at = waiters as u64;
        let cells: Vec<String> = pools
            .iter()
            .map(|&pool| {
                format!(
                    "{:.0} / {:.0}",
                    value(pool, "join", at),
                    value(pool, "hand_off", at)
                )
            })
            .collect();
        println!("| {waiters} | {} |", cells.join(" | "));
    }
    println!("\nMemory, bytes\n\n{}", columns("what"));
    for (measure, what) in [
        ("memory_per_idle_connection", "per idle connection"),
        ("memory_per_waiter", "per waiter (pool side)"),
        ("get_future_size", "`get()` future (caller side)"),
    ] {
        let cells: Vec<String> = pools
            .iter()
            .map(|&pool| {
                let figure = figures
                    .iter()
                    .find(|figure| figure.pool == pool && figure.measure == measure);
                figure.map_or_else(String::new, |figure| format!("{:.0}", figure.value))
            })
            .collect();
        println!("| {what} | {} |", cells.join(" | "));
    }
}
