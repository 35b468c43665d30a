//! The "behind a transaction pooler" profile, through Debian's PgBouncer in
//! transaction mode in front of a private cluster: statements that prepare
//! named statements, typed and simple queries, transactions with the
//! helper, a transaction left open, all from many tasks sharing few server
//! connections.

use std::time::Duration;

mod common;
use common::AppError;

use tidewater::{Pool, PoolConfig};
use tidewater_postgres::{PgManager, PgOptions, RetryPolicy, TransactionStatus, transaction};
use tidewater_testkit::{PgBouncer, PgBouncerOptions, PgCluster, PoolMode};
use tokio_postgres::types::Type;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_share_few_server_connections_through_pgbouncer() {
    let cluster = PgCluster::new().await.unwrap();
    cluster.execute("CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL); INSERT INTO counters VALUES (1, 0)").await.unwrap();
    let mut bouncer = PgBouncerOptions::for_cluster(&cluster);
    bouncer.pool_mode = PoolMode::Transaction;
    bouncer.default_pool_size = 2; // eight pooled clients share two server connections
    let bouncer = PgBouncer::start_with(bouncer).await.unwrap();

    let options = PgOptions {
        url: bouncer.url(),
        transaction_pooler: true,
        ..PgOptions::default()
    };
    let config = PoolConfig {
        max_size: 8,
        acquire_timeout: Duration::from_secs(20),
        ..PoolConfig::default()
    };
    let pool = Pool::new(PgManager::new(options).unwrap(), config).unwrap();

    let tasks: Vec<_> = (0..16)
        .map(|task: i32| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for round in 0..25 {
                    let conn = pool.get().await?;
                    // A named statement, outside any transaction.
                    let echoed: i32 = conn.query_one("SELECT $1::int", &[&round]).await?.get(0);
                    assert_eq!(echoed, round);
                    // One round trip, no named statement.
                    let rows = conn
                        .query_typed("SELECT $1::int + 1", &[(&task, Type::INT4)])
                        .await?;
                    assert_eq!(rows[0].get::<_, i32>(0), task + 1);
                    if round % 5 == 0 {
                        // Forgotten: must not leak into the next user's session.
                        conn.batch_execute("BEGIN").await?;
                    }
                    drop(conn);
                    transaction(&pool, RetryPolicy::default(), async |tx| {
                        tx.execute("UPDATE counters SET n = n + 1 WHERE id = $1", &[&1])
                            .await?;
                        Ok::<_, AppError>(())
                    })
                    .await?;
                }
                Ok::<_, AppError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }

    let conn = pool.get().await.unwrap();
    assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
    let n: i64 = conn
        .query_one("SELECT n FROM counters WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 16 * 25, "every transaction committed exactly once");
}
