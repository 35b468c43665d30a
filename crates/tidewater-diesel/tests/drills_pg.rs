//! PostgreSQL failure drills through diesel-async, each on a private
//! cluster of its own: a restart and terminated sessions under load (the
//! fault is proven to have landed, then recovery, then every slot is
//! back), and what a caller leaves behind (a dropped `transaction`
//! future, a plain `BEGIN`, a query future dropped mid-query) never
//! reaches the next caller.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use tidewater::{CloseReason, Pool, PoolConfig};
use tidewater_diesel::{PgManager, TransactionStatus};
use tidewater_testkit::PgCluster;
use tidewater_testkit::Shutdown;
use tokio::task::JoinHandle;

mod common;
use common::{eventually, pg_i64};

fn config(max_size: u32) -> PoolConfig {
    PoolConfig {
        max_size,
        acquire_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        validation_timeout: Duration::from_secs(5),
        maintenance_interval: Duration::from_millis(100),
        ..PoolConfig::default()
    }
}

async fn cluster_and_pool(max_size: u32) -> (PgCluster, Pool<PgManager>) {
    let cluster = PgCluster::new().await.expect("a private cluster");
    let url = cluster.url_for(PgCluster::SUPERUSER, PgCluster::PASSWORD, "postgres");
    let pool = Pool::new(PgManager::new(url).unwrap(), config(max_size)).unwrap();
    (cluster, pool)
}

async fn one_call(pool: &Pool<PgManager>) -> Result<(), String> {
    let mut conn = pool.get().await.map_err(|error| error.to_string())?;
    let one = pg_i64(&mut *conn, "SELECT 1")
        .await
        .map_err(|error| error.to_string())?;
    assert_eq!(one, 1);
    Ok(())
}

/// Callers that each loop get, `SELECT 1`, drop, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    callers: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(pool: &Pool<PgManager>, callers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let callers = (0..callers)
            .map(|_| {
                let (pool, stop, calls, failed) =
                    (pool.clone(), stop.clone(), calls.clone(), failed.clone());
                tokio::spawn(async move {
                    while !stop.load(SeqCst) {
                        match one_call(&pool).await {
                            Ok(()) => calls.fetch_add(1, SeqCst),
                            Err(_) => failed.fetch_add(1, SeqCst),
                        };
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        Self {
            stop,
            calls,
            failed,
            callers,
        }
    }

    async fn stop(self) {
        self.stop.store(true, SeqCst);
        for caller in self.callers {
            caller.await.expect("no caller panicked");
        }
    }
}

/// Once the load stopped: nothing is checked out, and every slot serves.
async fn assert_all_slots_back(pool: &Pool<PgManager>) {
    let status = pool.status();
    assert_eq!((status.in_use, status.waiters), (0, 0), "{status}");
    let mut held = Vec::new();
    for _ in 0..status.max_size {
        held.push(
            pool.get()
                .await
                .unwrap_or_else(|error| panic!("a slot was lost: {error}")),
        );
    }
    for conn in &mut held {
        assert_eq!(pg_i64(&mut **conn, "SELECT 1").await.unwrap(), 1);
    }
}

/// Runs `fault` under load, waits until it shows in the pool (calls
/// failed, or connections found broken and replaced), waits for recovery,
/// then checks 100 more calls all succeed and every slot is back.
async fn drill(pool: &Pool<PgManager>, fault: impl AsyncFnOnce()) {
    assert_all_slots_back(pool).await; // warm: the pool at full size
    let broken_before = pool.stats().closed_by(CloseReason::Broken);
    let opened_before = pool.stats().opened;
    let load = Load::start(pool, 8);
    assert!(
        eventually(async || load.calls.load(SeqCst) > 0).await,
        "the load runs"
    );
    fault().await;
    let landed = eventually(async || {
        let stats = pool.stats();
        load.failed.load(SeqCst) > 0
            || (stats.closed_by(CloseReason::Broken) > broken_before
                && stats.opened > opened_before)
    })
    .await;
    assert!(landed, "the fault never showed: {}", pool.status());
    assert!(
        eventually(async || one_call(pool).await.is_ok()).await,
        "no recovery: {}",
        pool.status()
    );
    let failed = load.failed.load(SeqCst);
    let calls = load.calls.load(SeqCst);
    assert!(
        eventually(async || load.calls.load(SeqCst) >= calls + 100).await,
        "the load goes on"
    );
    assert_eq!(
        load.failed.load(SeqCst),
        failed,
        "calls failed after recovery"
    );
    load.stop().await;
    assert_all_slots_back(pool).await;
    assert!(
        pool.stats().opened > opened_before,
        "connections were replaced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_under_load_recovers() {
    let (cluster, pool) = cluster_and_pool(5).await;
    drill(&pool, async || {
        cluster.restart(Shutdown::Fast).await.unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_sessions_under_load_are_replaced() {
    let (cluster, pool) = cluster_and_pool(5).await;
    drill(&pool, async || {
        let ended = cluster.terminate_backends().await.unwrap();
        assert!(ended >= 1, "no session was terminated");
    })
    .await;
}

const CREATE: &str = "CREATE TABLE items (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)";

/// Sessions of the cluster idle in a transaction.
async fn idle_in_transaction(cluster: &PgCluster) -> i64 {
    cluster
        .execute(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()",
        )
        .await
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_future_dropped_inside_is_discarded_and_rolled_back() {
    let (cluster, pool) = cluster_and_pool(1).await;
    let mut conn = pool.get().await.unwrap();
    conn.batch_execute(CREATE).await.unwrap();
    let first = conn.id();
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let inside = conn.transaction::<(), diesel::result::Error, _>(async |tx| {
        diesel::sql_query("INSERT INTO items VALUES (1, 1)")
            .execute(tx)
            .await?;
        entered_tx.send(()).unwrap();
        std::future::pending::<()>().await;
        Ok(())
    });
    tokio::select! {
        _ = inside => panic!("the body never ends"),
        _ = entered_rx => {} // the transaction's future is dropped here, inside
    }
    assert_eq!(
        idle_in_transaction(&cluster).await,
        1,
        "the server saw the transaction open"
    );
    drop(conn);

    let mut conn = pool.get().await.unwrap();
    assert_ne!(conn.id(), first, "discarded, not reused");
    assert_eq!(pool.stats().closed_by(CloseReason::Broken), 1);
    // Idle, once the answer to the close of a statement diesel-async did
    // not cache (sent without waiting) is in.
    assert!(
        eventually(async || conn.transaction_status() == TransactionStatus::Idle).await,
        "{:?}",
        conn.transaction_status()
    );
    assert!(
        eventually(async || idle_in_transaction(&cluster).await == 0).await,
        "the abandoned transaction was rolled back on the server"
    );
    // The row the abandoned transaction inserted is not there, nor locked.
    conn.batch_execute("SET lock_timeout = '5s'; INSERT INTO items VALUES (1, 2)")
        .await
        .unwrap();
    assert_eq!(
        pg_i64(&mut *conn, "SELECT n FROM items WHERE id = 1")
            .await
            .unwrap(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_begin_is_rolled_back_and_the_connection_kept() {
    let (_cluster, pool) = cluster_and_pool(1).await;
    let mut conn = pool.get().await.unwrap();
    conn.batch_execute(CREATE).await.unwrap();
    let first = conn.id();
    conn.batch_execute("BEGIN; INSERT INTO items VALUES (1, 1)")
        .await
        .unwrap();
    assert_eq!(conn.transaction_status(), TransactionStatus::InTransaction);
    drop(conn);

    let mut conn = pool.get().await.unwrap();
    assert_eq!(conn.id(), first, "reset, not replaced");
    assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
    // The same session would see its own uncommitted row.
    assert_eq!(
        pg_i64(&mut *conn, "SELECT count(*) FROM items")
            .await
            .unwrap(),
        0
    );
    assert_eq!(pool.stats().opened, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_future_dropped_mid_query_is_clean_for_the_next_caller() {
    let (cluster, pool) = cluster_and_pool(1).await;
    let mut conn = pool.get().await.unwrap();
    conn.batch_execute(CREATE).await.unwrap();
    let first = conn.id();
    conn.batch_execute("BEGIN; INSERT INTO items VALUES (1, 1)")
        .await
        .unwrap();
    let running = async {
        eventually(async || {
            let active = cluster
                .execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(2)%' AND state = 'active'")
                .await
                .unwrap();
            active == "1"
        })
        .await
    };
    tokio::select! {
        result = diesel::sql_query("SELECT pg_sleep(2)").execute(&mut *conn) => {
            panic!("the query ended before it was seen running: {result:?}")
        }
        seen = running => assert!(seen, "the query never showed as running"),
    }
    // The query's future is gone while the server still runs it.
    assert_eq!(conn.transaction_status(), TransactionStatus::Busy);
    drop(conn);

    let mut conn = pool.get().await.unwrap();
    assert_eq!(conn.id(), first, "reset, not replaced");
    assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
    assert_eq!(
        pg_i64(&mut *conn, "SELECT count(*) FROM items")
            .await
            .unwrap(),
        0
    );
    let _: &mut AsyncPgConnection = &mut conn; // still the diesel connection
}
