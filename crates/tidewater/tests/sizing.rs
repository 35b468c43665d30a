//! The adaptive limit against a simulated database whose latency grows
//! with concurrency past a knee, under tokio's paused clock: it finds the
//! knee from below and from above, follows it when it moves, comes back to
//! it when the database is slower at every concurrency, stays within the
//! floor and the ceiling, composes with `resize()`, and loses no slot.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use tidewater::{LimitReason, Pool, PoolConfig, SizingConfig, SizingMode};
use tidewater_testkit::{ScriptedManager, SimulatedDatabase, scripted_pool, settle};
use tokio::task::JoinHandle;

const INTERVAL: Duration = Duration::from_millis(500);
const BASE: Duration = Duration::from_millis(5);

fn adaptive(ceiling: u32, floor: u32) -> PoolConfig {
    PoolConfig {
        max_size: ceiling,
        acquire_timeout: Duration::from_secs(600),
        leak_detection_threshold: None,
        sizing: SizingConfig {
            mode: SizingMode::Adaptive,
            floor,
            interval: INTERVAL,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Callers that loop: take a connection, run one query, give it back.
struct Load {
    pool: Pool<ScriptedManager>,
    db: Arc<SimulatedDatabase>,
    stop: Arc<AtomicBool>,
    callers: Vec<JoinHandle<u64>>,
}

impl Load {
    fn start(config: PoolConfig, knee: u32, callers: usize) -> Self {
        let (pool, _script) = scripted_pool(config);
        let db = Arc::new(SimulatedDatabase::new(BASE, knee));
        let stop = Arc::new(AtomicBool::new(false));
        let callers = (0..callers)
            .map(|_| {
                let (pool, db, stop) = (pool.clone(), db.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut served = 0;
                    while !stop.load(SeqCst) {
                        let conn = pool.get().await.expect("no caller fails");
                        db.query().await;
                        drop(conn);
                        served += 1;
                    }
                    served
                })
            })
            .collect();
        Self {
            pool,
            db,
            stop,
            callers,
        }
    }

    /// The limit at every interval for `span` of simulated time, each
    /// checked against the floor and the ceiling.
    async fn limits_over(&self, span: Duration) -> Vec<u32> {
        let mut limits = Vec::new();
        let end = tokio::time::Instant::now() + span;
        while tokio::time::Instant::now() < end {
            tokio::time::sleep(INTERVAL).await;
            let sizing = self.pool.sizing();
            let status = self.pool.status();
            assert!(
                sizing.floor.min(sizing.ceiling) <= sizing.limit && sizing.limit <= sizing.ceiling,
                "{sizing:?}"
            );
            assert_eq!(status.limit, sizing.limit);
            assert!(status.size <= status.max_size, "{status}");
            limits.push(sizing.limit);
        }
        limits
    }

    /// Stops the callers; every connection comes back and none is lost.
    async fn stop(self) -> u64 {
        self.stop.store(true, SeqCst);
        let mut served = 0;
        for caller in self.callers {
            served += caller.await.expect("caller ran");
        }
        settle().await;
        let status = self.pool.status();
        assert_eq!((status.in_use, status.waiters), (0, 0), "{status}");
        assert_eq!(status.idle, status.size, "{status}");
        assert!(status.size <= status.limit, "{status}");
        assert_eq!(served, self.db.queries());
        served
    }
}

/// Once at the knee, the limit keeps stepping around it (the steps are what
/// measure the throughput's elasticity): on average within 20% of it, and
/// never more than 20% below or 40% above it.
fn around(limits: &[u32], knee: u32) -> bool {
    let knee = f64::from(knee);
    let mean = limits.iter().map(|&limit| f64::from(limit)).sum::<f64>() / limits.len() as f64;
    (mean - knee).abs() <= 0.2 * knee
        && limits
            .iter()
            .all(|&limit| (0.8 * knee..=1.4 * knee).contains(&f64::from(limit)))
}

#[tokio::test(start_paused = true)]
async fn finds_the_knee_from_below_and_holds_near_it() {
    let load = Load::start(adaptive(200, 2), 30, 400);
    let mut climb = Vec::new();
    for _ in 0..10 {
        climb.push(load.pool.sizing().limit);
        tokio::time::sleep(INTERVAL / 5).await; // slow start's pace
    }
    climb.dedup();
    assert_eq!(
        &climb[..5],
        [2, 4, 8, 16, 32],
        "slow start doubles from the floor, five times an interval: {climb:?}"
    );
    load.limits_over(Duration::from_secs(10)).await;
    let steady = load.limits_over(Duration::from_secs(30)).await;
    assert!(around(&steady, 30), "around the knee (30): {steady:?}");
    load.stop().await;
}

#[tokio::test(start_paused = true)]
async fn follows_the_knee_down_and_back_up() {
    let load = Load::start(adaptive(200, 2), 40, 400);
    load.limits_over(Duration::from_secs(15)).await;
    load.db.set_knee(10);
    let falling = load.limits_over(Duration::from_secs(15)).await;
    assert!(
        around(&falling[falling.len() - 10..], 10),
        "down to the new knee (10) from above: {falling:?}"
    );
    load.db.set_knee(40);
    let rising = load.limits_over(Duration::from_secs(20)).await;
    assert!(
        around(&rising[rising.len() - 10..], 40),
        "back up to the knee (40) from below: {rising:?}"
    );
    load.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_database_slower_at_every_concurrency_does_not_starve_the_pool() {
    let load = Load::start(adaptive(200, 2), 30, 400);
    load.limits_over(Duration::from_secs(15)).await;
    // Three times slower whatever the concurrency (a slower network): the
    // throughput drops at once, whatever the limit's step, so one
    // comparison is off (and clamped); the next ones see the knee again.
    load.db.set_base(BASE * 3);
    let after = load.limits_over(Duration::from_secs(20)).await;
    assert!(
        around(&after[after.len() - 10..], 30),
        "back at the knee (30): {after:?}"
    );
    assert!(
        after.iter().all(|&limit| limit >= 18),
        "never far below it: {after:?}"
    );
    load.stop().await;
}

#[tokio::test(start_paused = true)]
async fn stays_within_a_resized_ceiling_and_the_floor() {
    let load = Load::start(adaptive(200, 6), 3, 100);
    let limits = load.limits_over(Duration::from_secs(10)).await;
    assert!(
        limits[limits.len() - 10..].iter().all(|&limit| limit <= 7),
        "a knee below the floor keeps the limit within one of the floor: {limits:?}"
    );
    load.db.set_knee(60);
    load.pool.resize(20).unwrap();
    let capped = load.limits_over(Duration::from_secs(10)).await;
    assert_eq!(
        capped.iter().max(),
        Some(&20),
        "up to the new ceiling: {capped:?}"
    );
    assert!(
        capped[capped.len() - 6..].iter().all(|&limit| limit >= 18),
        "at the ceiling, stepping back one step to keep measuring: {capped:?}"
    );
    let open = load.pool.status().size;
    load.pool.resize(10).unwrap();
    assert_eq!(
        load.pool.status().limit,
        10,
        "a lower ceiling applies at once"
    );
    load.limits_over(Duration::from_secs(2)).await;
    let stats = load.pool.stats();
    assert_eq!(
        stats.closed_by(tidewater::CloseReason::Resized),
        u64::from(open - 10),
        "the connections above the new ceiling close as resized"
    );
    load.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_falling_limit_closes_connections_as_limited() {
    let load = Load::start(adaptive(200, 2), 40, 400);
    load.limits_over(Duration::from_secs(10)).await;
    load.db.set_knee(10);
    load.limits_over(Duration::from_secs(10)).await;
    let stats = load.pool.stats();
    assert!(
        stats.closed_by(tidewater::CloseReason::Limited) >= 20,
        "{:?}",
        stats.closed_by(tidewater::CloseReason::Limited)
    );
    assert_eq!(stats.closed_by(tidewater::CloseReason::Resized), 0);
    assert_eq!(stats.timeouts, 0);
    load.stop().await;
}

#[tokio::test(start_paused = true)]
async fn fixed_sizing_keeps_the_limit_at_max_size() {
    let config = PoolConfig {
        sizing: SizingConfig::default(),
        ..adaptive(20, 2)
    };
    let load = Load::start(config, 5, 100);
    let limits = load.limits_over(Duration::from_secs(5)).await;
    assert!(limits.iter().all(|&limit| limit == 20), "{limits:?}");
    assert_eq!(load.pool.sizing().mode, SizingMode::Fixed);
    load.stop().await;
}

#[tokio::test(start_paused = true)]
async fn without_queued_callers_the_limit_does_not_rise() {
    // Ten callers never fill a limit that slow start took past them.
    let load = Load::start(adaptive(200, 16), 100, 10);
    let limits = load.limits_over(Duration::from_secs(10)).await;
    assert!(limits.iter().all(|&limit| limit == 16), "{limits:?}");
    assert_eq!(load.pool.sizing().reason, LimitReason::NotReached);
    load.stop().await;
}

/// Callers that arrive on their own schedule (an open system, as in a web
/// service), 400 a second whatever the limit, on a database whose latency
/// wanders between 4 and 6 ms for reasons of its own: bursts of 10 every
/// 25 ms, then of 40 every 100 ms. The throughput cannot tell the limits
/// apart and the mean in use follows the latency; what a higher limit buys
/// is time not spent queueing. The limit rises until the bursts no longer
/// queue, and stays around that size (above it nobody queues and it drifts
/// down, below it a step up saves waiting).
#[tokio::test(start_paused = true)]
async fn callers_arriving_on_their_own_schedule_keep_it_around_their_bursts() {
    let (pool, _script) = scripted_pool(adaptive(200, 2));
    let db = Arc::new(SimulatedDatabase::new(BASE, 100));
    let (pool_, db_) = (pool.clone(), db.clone());
    let arrivals = tokio::spawn(async move {
        let mut callers = tokio::task::JoinSet::new();
        let mut wander: u64 = 1;
        for (every, burst, bursts) in [(25, 10, 400), (100, 40, 400)] {
            let mut ticks = tokio::time::interval(Duration::from_millis(every));
            for _ in 0..bursts {
                ticks.tick().await;
                wander = wander
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                db_.set_base(Duration::from_micros(4_000 + (wander >> 33) % 2_000));
                for _ in 0..burst {
                    let (pool, db) = (pool_.clone(), db_.clone());
                    callers.spawn(async move {
                        let conn = pool.get().await.expect("no caller fails");
                        db.query().await;
                        drop(conn);
                    });
                }
            }
        }
        while let Some(caller) = callers.join_next().await {
            caller.expect("caller ran");
        }
    });
    let limits_over = |span: Duration| {
        let pool = pool.clone();
        async move {
            let mut limits = Vec::new();
            let end = tokio::time::Instant::now() + span;
            while tokio::time::Instant::now() < end {
                tokio::time::sleep(INTERVAL).await;
                limits.push(pool.sizing().limit);
            }
            limits
        }
    };
    let small = limits_over(Duration::from_secs(10)).await;
    assert!(
        around(&small[small.len() - 10..], 10),
        "around a burst (10): {small:?}"
    );
    let large = limits_over(Duration::from_secs(20)).await;
    let before = pool.stats();
    let settled = limits_over(Duration::from_secs(10)).await;
    let after = pool.stats();
    assert!(
        around(&settled, 40),
        "around a burst (40): {large:?} then {settled:?}"
    );
    let waited = after.acquired_after_wait - before.acquired_after_wait;
    let all = after.acquired() - before.acquired();
    assert!(all > 3_000, "{all} checkouts");
    assert!(waited * 5 <= all, "{waited} of {all} checkouts queued");
    arrivals.await.expect("arrivals ran");
    settle().await;
    let status = pool.status();
    assert_eq!((status.in_use, status.waiters), (0, 0), "{status}");
    assert_eq!(db.queries(), 20_000);
}
