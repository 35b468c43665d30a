//! Fleet mode on a private PostgreSQL with `max_connections = 40`: pools
//! of `max_size = 50` each, under load, share it without a failed checkout
//! and without the server's sessions ever passing its limit for users
//! (sampled every 100 ms from `pg_stat_activity`; the fleet's own, lower
//! budget is checked by `tidewater-lab fleet`'s `within_budget`); a
//! member that leaves gives its share to the others, one that joins gets
//! at least its floor; while the server is down every member keeps a small static
//! share and says so, and the fleet reforms when it is back. Behind a
//! transaction pooler, fleet mode is refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tidewater::fleet::FleetState;
use tidewater::{Pool, PoolConfig, SizingConfig, SizingMode};
use tidewater_postgres::PgError;
use tidewater_postgres::{FleetOptions, PgManager, PgOptions};
use tidewater_testkit::{PgCluster, Sample, SessionSampler, Shutdown, eventually};
use tokio::task::JoinHandle;

const MAX_CONNECTIONS: u32 = 40;
const RESERVED: u32 = 3;
const RESERVE: u32 = 3;

fn fleet_options() -> FleetOptions {
    FleetOptions {
        name: "bank".into(),
        heartbeat: Duration::from_millis(200),
        lease: Duration::from_secs(1),
        reserve: RESERVE,
        ..FleetOptions::default()
    }
}

fn member(cluster: &PgCluster) -> Pool<PgManager> {
    member_sized(cluster, SizingMode::Fixed)
}

fn member_sized(cluster: &PgCluster, mode: SizingMode) -> Pool<PgManager> {
    let options = PgOptions {
        url: cluster.url(),
        fleet: Some(fleet_options()),
        ..PgOptions::default()
    };
    let config = PoolConfig {
        max_size: 50,
        acquire_timeout: Duration::from_secs(10),
        sizing: SizingConfig {
            mode,
            ..SizingConfig::default()
        },
        ..PoolConfig::default()
    };
    PgManager::new(options).unwrap().into_pool(config).unwrap()
}

/// Callers on one pool, each looping a 2 ms query until `stop`.
struct Load {
    served: Arc<AtomicU64>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: Vec<JoinHandle<()>>,
}

fn load(pool: &Pool<PgManager>, callers: usize, stop: &Arc<AtomicBool>) -> Load {
    let served = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let tasks = (0..callers)
        .map(|_| {
            let (pool, stop) = (pool.clone(), stop.clone());
            let (served, failures) = (served.clone(), failures.clone());
            tokio::spawn(async move {
                while !stop.load(Relaxed) {
                    let outcome = match pool.get().await {
                        Ok(conn) => conn
                            .simple_query("SELECT pg_sleep(0.002)")
                            .await
                            .map(drop)
                            .map_err(|error| error.to_string()),
                        Err(error) => Err(error.to_string()),
                    };
                    match outcome {
                        Ok(()) => {
                            served.fetch_add(1, Relaxed);
                        }
                        Err(error) => failures.lock().unwrap().push(error),
                    }
                }
            })
        })
        .collect();
    Load {
        served,
        failures,
        tasks,
    }
}

impl Load {
    async fn finish(self) -> (u64, Vec<String>) {
        for task in self.tasks {
            task.await.unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.served.load(Relaxed), failures)
    }
}

/// What the fleet may hold with `members` coordinators and one sampler
/// among the others.
fn budget(members: u32) -> u32 {
    MAX_CONNECTIONS - RESERVED - RESERVE - members - 1
}

fn grants(pools: &[Pool<PgManager>]) -> Vec<u32> {
    pools
        .iter()
        .map(|pool| pool.fleet().map_or(0, |fleet| fleet.grant))
        .collect()
}

async fn coordinated(pools: &[Pool<PgManager>], members: usize) -> bool {
    pools.iter().all(|pool| {
        pool.fleet().is_some_and(|fleet| {
            fleet.state == FleetState::Coordinated && fleet.members.len() == members
        })
    })
}

/// No sample over the server's limit for its users: never a "too many
/// clients".
fn assert_within(samples: &[Sample]) {
    assert!(samples.len() >= 10, "too few samples: {samples:?}");
    let limit = MAX_CONNECTIONS - RESERVED;
    for sample in samples {
        assert!(
            sample.all <= limit,
            "{} sessions over the server's {limit}: {samples:?}",
            sample.all
        );
    }
    let most = samples
        .iter()
        .map(|sample| sample.tagged)
        .max()
        .unwrap_or(0);
    assert!(most > 10, "the load never used the server: {samples:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_pools_of_fifty_share_forty_connections() {
    let cluster = PgCluster::new().await.unwrap();
    cluster.set_max_connections(MAX_CONNECTIONS).await.unwrap();
    let sampler = SessionSampler::connect(&cluster.url(), "tidewater-fleet/")
        .await
        .unwrap()
        .start();
    let mut pools: Vec<_> = (0..4).map(|_| member(&cluster)).collect();
    assert!(
        eventually(async || coordinated(&pools, 4).await).await,
        "the fleet formed: {:?}",
        pools.iter().map(Pool::fleet).collect::<Vec<_>>()
    );

    // Load through all four: 40 callers each, for two seconds.
    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = pools.iter().map(|pool| load(pool, 40, &stop)).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let shares = grants(&pools);
    stop.store(true, Relaxed);
    for (index, load) in loads.into_iter().enumerate() {
        let (served, failures) = load.finish().await;
        assert!(failures.is_empty(), "pool {index} failed: {failures:?}");
        assert!(served > 0, "pool {index} served nobody");
    }
    assert!(shares.iter().sum::<u32>() <= budget(4), "{shares:?}");
    assert!(shares.iter().all(|&share| share >= 2), "{shares:?}");

    // One leaves: its share goes to the others (busy again) within a lease.
    let left = pools.pop().unwrap();
    drop(left);
    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = pools.iter().map(|pool| load(pool, 40, &stop)).collect();
    assert!(
        eventually(async || {
            coordinated(&pools, 3).await && grants(&pools).iter().sum::<u32>() >= budget(3) - 1
        })
        .await,
        "the share moved: {:?}",
        grants(&pools)
    );
    // A fifth joins, under load: shares rebalance, no overshoot.
    pools.push(member(&cluster));
    // The fifth adapts its limit: the fleet's grant is its ceiling.
    pools.push(member_sized(&cluster, SizingMode::Adaptive));
    assert!(
        eventually(async || {
            coordinated(&pools, 5).await && grants(&pools).iter().all(|&grant| grant >= 2)
        })
        .await,
        "the new members got a share: {:?}",
        grants(&pools)
    );
    // The adaptive member's ceiling is its grant, its limit below (read
    // twice around a heartbeat, the two can be a step apart).
    assert!(
        eventually(async || {
            let adaptive = pools[4].sizing();
            let grant = pools[4].fleet().map_or(0, |fleet| fleet.grant);
            adaptive.ceiling == grant && adaptive.limit <= adaptive.ceiling
        })
        .await,
        "{:?} {:?}",
        pools[4].sizing(),
        pools[4].fleet()
    );
    stop.store(true, Relaxed);
    for load in loads {
        let (_, failures) = load.finish().await;
        assert!(failures.is_empty(), "{failures:?}");
    }
    assert_within(&sampler.finish().await);

    // The server stops: every member falls back to a small static share
    // and says so; it comes back: the fleet reforms, and serves.
    cluster.stop(Shutdown::Fast).await.unwrap();
    assert!(
        eventually(async || {
            pools.iter().all(|pool| {
                pool.fleet().is_some_and(|fleet| {
                    fleet.state == FleetState::Degraded
                        && fleet.reason.is_some()
                        && fleet.grant <= fleet_options().fallback
                        && pool.status().max_size == fleet.grant
                })
            })
        })
        .await,
        "every member degraded: {:?}",
        pools.iter().map(Pool::fleet).collect::<Vec<_>>()
    );
    cluster.start().await.unwrap();
    assert!(
        eventually(async || coordinated(&pools, 5).await).await,
        "the fleet reformed: {:?}",
        pools.iter().map(Pool::fleet).collect::<Vec<_>>()
    );
    for pool in &pools {
        let conn = pool.get().await.unwrap();
        conn.simple_query("SELECT 1").await.unwrap();
    }
    assert!(grants(&pools).iter().sum::<u32>() <= budget(5) + 1);
}

#[test]
fn a_fleet_behind_a_transaction_pooler_is_refused() {
    let options = PgOptions {
        fleet: Some(fleet_options()),
        transaction_pooler: true,
        ..PgOptions::default()
    };
    let Err(PgError::Config(message)) = PgManager::new(options) else {
        panic!("fleet mode behind a transaction pooler was accepted");
    };
    assert!(message.contains("transaction pooler"), "{message}");
}
