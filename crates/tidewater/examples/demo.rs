//! The pool at work, in about five seconds, on a simulated database.
//!
//! 1. A burst: 1000 callers share 10 connections; every caller is served
//!    in FIFO order and the pool never opens more than 10.
//! 2. A leak: one caller holds a connection too long and the pool names the
//!    line that took it.
//! 3. An outage: the database goes down; callers fail fast with the cause
//!    instead of piling up, and the pool recovers by itself when it returns.
//!
//! Run it with `cargo run --release -p tidewater --example demo`.

use std::time::{Duration, Instant};

use tidewater::{BreakerConfig, Error, ErrorClass, Pool, PoolConfig};
use tidewater_testkit::ScriptedManager;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_target(false).init();
    let manager = ScriptedManager::new();
    let database = manager.script();
    database.set_connect_latency(Duration::from_millis(20));
    let config = PoolConfig {
        name: "demo".into(),
        max_size: 10,
        acquire_timeout: Duration::from_secs(2),
        leak_detection_threshold: Some(Duration::from_millis(500)),
        maintenance_interval: Duration::from_millis(100),
        breaker: BreakerConfig {
            failure_threshold: 3,
            ..Default::default()
        },
        ..PoolConfig::default()
    };
    let pool = Pool::new(manager, config)?;

    println!("\n1. A burst: 1000 callers, 10 connections, 2 ms of work each");
    let start = Instant::now();
    let callers: Vec<_> = (0..1000)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let conn = pool.get().await?;
                tokio::time::sleep(Duration::from_millis(2)).await; // the query
                drop(conn);
                Ok::<_, Error>(())
            })
        })
        .collect();
    let mut failed = 0;
    for caller in callers {
        failed += usize::from(caller.await?.is_err());
    }
    let stats = pool.stats();
    println!(
        "   {} served, {failed} failed, in {:?}; {} connections opened; wait p50 {:?}, p99 {:?}",
        stats.acquired(),
        start.elapsed(),
        stats.opened,
        stats.wait_time.quantile(0.5),
        stats.wait_time.quantile(0.99),
    );
    println!("   {}", pool.status());

    println!("\n2. A leak: one connection held for 800 ms (threshold 500 ms)");
    let held = pool.get().await?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    for suspect in pool.leak_suspects() {
        println!("   suspect: {suspect}");
    }
    drop(held);

    println!("\n3. An outage: the database restarts and refuses connections for a while");
    let mut all = Vec::new();
    for _ in 0..pool.status().size {
        all.push(pool.get().await?);
    }
    database.set_down(Some(ErrorClass::Transient));
    all.iter().for_each(|conn| conn.set_broken()); // the restart killed them
    drop(all);
    let waited = pool.get().await.unwrap_err();
    println!("   a caller that waited: {waited}");
    let refused = pool.get().await.unwrap_err();
    println!("   a caller after that:  {refused}");
    database.set_down(None);
    let outage_over = Instant::now();
    loop {
        match pool.get().await {
            Ok(_) => break,
            Err(error) if error.is_retryable() => {
                tokio::time::sleep(error.retry_after().unwrap_or(Duration::from_millis(50))).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
    println!(
        "   recovered {:?} after the database came back",
        outage_over.elapsed()
    );

    let report = pool.close().await;
    println!("\nclosed: {report:?}\n");
    Ok(())
}
