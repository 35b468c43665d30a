//! PostgreSQL through sqlx: the failures sqlx's own pool is known for
//! (database down, a session that died while checked out, a cancelled
//! query or an open transaction handed to the next caller), setup SQL,
//! rotating credentials, `Acquire`, and two drills (server restart and
//! terminated sessions under load). Everything that breaks a server runs
//! on a private cluster of its own.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::{Acquire, Connection, Postgres};
use tidewater::credentials::{Credentials, CredentialsProvider};
use tidewater::{Error, ErrorClass, Pool, PoolConfig};
use tidewater_sqlx::{SqlxManager, SqlxPool};
use tidewater_testkit::{PgCluster, Shutdown};
use tokio::sync::OnceCell;
use tokio::time::Instant;

mod common;
use common::{eventually, query_i64};

/// A cluster for the checks that do not break it.
static SHARED: OnceCell<PgCluster> = OnceCell::const_new();
static NEXT: AtomicU64 = AtomicU64::new(0);

async fn shared() -> &'static PgCluster {
    SHARED
        .get_or_init(|| async { PgCluster::new().await.expect("a private cluster") })
        .await
}

fn config(max_size: u32) -> PoolConfig {
    PoolConfig {
        max_size,
        acquire_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        validation_timeout: Duration::from_secs(5),
        ..PoolConfig::default()
    }
}

fn pool(url: &str, config: PoolConfig) -> Pool<SqlxManager<Postgres>> {
    SqlxManager::from_url(url)
        .unwrap()
        .into_pool(config)
        .unwrap()
}

/// The text of an error and of every error behind it.
fn full_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        text.push_str(" | ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

/// The connection error behind a failed `get()`: the cause of a permanent
/// failure, the last attempt's behind a timeout or an open breaker.
fn connect_cause(error: &Error) -> String {
    match error {
        Error::Connect(cause) => full_text(cause),
        Error::Timeout {
            last_connect_error: Some(cause),
            ..
        } => full_text(cause),
        Error::Unavailable { cause, .. } => full_text(cause),
        other => panic!("no connection error behind {other:?}"),
    }
}

/// sqlx issue: the database is down. Nothing listens on the port: the
/// refusal is transient, so the caller is held until its acquire timeout,
/// and then gets the refusal itself, not a bare "timed out".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_fails_with_the_refusal_as_cause() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }; // closed: nothing listens there now
    let config = PoolConfig {
        acquire_timeout: Duration::from_secs(2),
        ..config(2)
    };
    let pool = pool(
        &format!("postgres://postgres@127.0.0.1:{port}/test"),
        config.clone(),
    );
    let error = pool.get().await.expect_err("nothing listens");
    let cause = connect_cause(&error);
    assert!(
        cause.to_lowercase().contains("refused"),
        "{error} / {cause}"
    );
    assert!(
        error.to_string().to_lowercase().contains("refused"),
        "{error}"
    );
    assert!(error.is_retryable());
    assert!(pool.stats().connect_errors_transient >= 1);
}

/// sqlx issue: the database is down. A stopped cluster refuses like a
/// closed port; a bad password is permanent and reaches the caller at
/// once, long before the acquire timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_server_and_bad_password_fail_with_their_cause() {
    let cluster = PgCluster::new().await.unwrap();
    let wrong = pool(
        &cluster.url_for(PgCluster::SUPERUSER, "wrong password", "postgres"),
        config(2),
    );
    let start = Instant::now();
    let error = wrong.get().await.expect_err("bad password");
    assert!(start.elapsed() < config(2).acquire_timeout, "{error}");
    let Error::Connect(cause) = &error else {
        panic!("not a connect error: {error:?}")
    };
    assert_eq!(cause.class(), ErrorClass::Permanent);
    assert!(error.to_string().contains("28P01"), "{error}");
    assert!(error.to_string().contains("bad password"), "{error}");
    assert!(!error.is_retryable());

    let unknown = pool(
        &cluster.url_for(PgCluster::SUPERUSER, PgCluster::PASSWORD, "no_such_db"),
        config(2),
    );
    let error = unknown.get().await.expect_err("unknown database");
    assert!(error.to_string().contains("3D000"), "{error}");

    cluster.stop(Shutdown::Fast).await.unwrap();
    let config = PoolConfig {
        acquire_timeout: Duration::from_secs(2),
        ..config(2)
    };
    let down = pool(&cluster.url(), config);
    let error = down.get().await.expect_err("the server is stopped");
    let cause = connect_cause(&error);
    assert!(
        cause.to_lowercase().contains("refused"),
        "{error} / {cause}"
    );
}

/// sqlx issue: a checked-out connection whose session died on the server
/// is not handed out again: its slot is freed and the next `get()` works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_session_died_is_replaced() {
    let cluster = shared().await;
    let pool = pool(&cluster.url(), config(1));
    let mut conn = pool.get().await.unwrap();
    let id = conn.id();
    let pid = query_i64(&mut *conn, "SELECT pg_backend_pid()")
        .await
        .unwrap();
    cluster
        .execute(&format!("SELECT pg_terminate_backend({pid})"))
        .await
        .unwrap();
    let gone = eventually(async || {
        cluster
            .execute(&format!(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"
            ))
            .await
            .unwrap()
            == "0"
    })
    .await;
    assert!(gone, "the session was not terminated");
    assert!(
        query_i64(&mut *conn, "SELECT 1").await.is_err(),
        "its socket is dead"
    );
    drop(conn);
    assert_eq!(pool.status().in_use, 0, "{}", pool.status());

    let mut next = pool.get().await.expect("the next get works");
    assert_ne!(next.id(), id, "a new connection, not the dead one");
    assert_eq!(query_i64(&mut *next, "SELECT 1").await.unwrap(), 1);
    let status = pool.status();
    assert_eq!((status.size, status.in_use), (1, 1), "{status}");
    drop(next);
    let stats = pool.stats();
    assert_eq!(stats.reset_failures, 1, "found out by the reset");
    assert_eq!(stats.closed_total(), 1);
}

/// `state <> 'idle'` sessions of an application name, and whether one of
/// them is inside a transaction.
async fn busy_sessions(cluster: &PgCluster, application: &str) -> String {
    cluster
        .execute(&format!(
            "SELECT count(*) FILTER (WHERE state <> 'idle') || ',' || \
             count(*) FILTER (WHERE xact_start IS NOT NULL) \
             FROM pg_stat_activity WHERE application_name = '{application}'"
        ))
        .await
        .unwrap()
}

/// Whether the connection's session is outside any transaction block:
/// no transaction id assigned, and (on the simple protocol, where a
/// statement outside a block is its own transaction) the transaction
/// started with this statement.
async fn no_transaction_open(conn: &mut sqlx::PgConnection) -> bool {
    let xid: Option<i64> = sqlx::query_scalar("SELECT txid_current_if_assigned()::text::bigint")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let own = query_i64(conn, "SELECT (now() = statement_timestamp())::int")
        .await
        .unwrap();
    xid.is_none() && own == 1
}

/// sqlx issue: a query whose future was dropped mid-flight (a timeout
/// around it) must not leave its answers, or the transaction it ran in,
/// to the next caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_query_leaves_nothing_for_the_next_caller() {
    let cluster = shared().await;
    let application = format!("cancelled_{}", NEXT.fetch_add(1, SeqCst));
    let url = format!("{}?application_name={application}", cluster.url());
    let config = PoolConfig {
        validation_timeout: Duration::from_secs(2),
        ..config(1)
    };
    let pool = pool(&url, config);
    sqlx::query("CREATE TABLE IF NOT EXISTS cancelled (x int)")
        .execute(&mut *pool.get().await.unwrap())
        .await
        .unwrap();

    // A short query cancelled on the client: the reset reads its answer
    // and the connection is kept.
    let mut conn = pool.get().await.unwrap();
    let id = conn.id();
    let cancelled = tokio::time::timeout(
        Duration::from_millis(100),
        sqlx::raw_sql("BEGIN; INSERT INTO cancelled VALUES (1); SELECT pg_sleep(0.5)")
            .execute(&mut *conn),
    )
    .await;
    assert!(cancelled.is_err(), "the query outlived its timeout");
    drop(conn);
    let mut conn = pool.get().await.unwrap();
    assert_eq!(conn.id(), id, "drained and kept");
    assert!(no_transaction_open(&mut conn).await);
    assert_eq!(
        query_i64(&mut *conn, "SELECT count(*) FROM cancelled")
            .await
            .unwrap(),
        0,
        "the cancelled transaction was rolled back"
    );
    drop(conn);

    // A query that runs past the validation timeout: the reset gives up on
    // it and the connection is discarded; the next caller gets a new one.
    let mut conn = pool.get().await.unwrap();
    let cancelled = tokio::time::timeout(
        Duration::from_millis(100),
        sqlx::query("SELECT pg_sleep(10)").execute(&mut *conn),
    )
    .await;
    assert!(cancelled.is_err());
    drop(conn);
    let mut conn = pool.get().await.expect("served after the reset gave up");
    assert_ne!(
        conn.id(),
        id,
        "the connection with a query in flight was discarded"
    );
    assert!(no_transaction_open(&mut conn).await);
    assert_eq!(pool.stats().reset_failures, 1);
    let id = conn.id();
    drop(conn);

    // An explicit BEGIN, and an sqlx transaction, left open.
    let mut conn = pool.get().await.unwrap();
    common::execute(&mut *conn, "BEGIN; INSERT INTO cancelled VALUES (2)")
        .await
        .unwrap();
    drop(conn);
    let mut conn = pool.get().await.unwrap();
    assert_eq!(conn.id(), id, "rolled back, not replaced");
    assert!(no_transaction_open(&mut conn).await);
    let mut tx = Connection::begin(&mut *conn).await.unwrap();
    sqlx::query("INSERT INTO cancelled VALUES (3)")
        .execute(&mut *tx)
        .await
        .unwrap();
    drop(tx); // queues sqlx's ROLLBACK
    drop(conn);
    let mut conn = pool.get().await.unwrap();
    assert_eq!(conn.id(), id);
    assert!(no_transaction_open(&mut conn).await);
    // A failed transaction block (every statement refused until ROLLBACK).
    let _ = common::execute(&mut *conn, "BEGIN; SELECT 1/0").await;
    drop(conn);
    let mut conn = pool.get().await.unwrap();
    assert_eq!(conn.id(), id);
    assert!(no_transaction_open(&mut conn).await);
    assert_eq!(
        query_i64(&mut *conn, "SELECT count(*) FROM cancelled")
            .await
            .unwrap(),
        0
    );
    drop(conn);
    // Nothing of ours is busy or in a transaction on the server, once the
    // discarded session's sleep is over.
    let quiet = eventually(async || busy_sessions(cluster, &application).await == "0,0").await;
    assert!(quiet, "{}", busy_sessions(cluster, &application).await);
}

/// Setup SQL runs on every new connection; a failing statement is a
/// connection error of its class that names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_sql_runs_on_each_new_connection() {
    let cluster = shared().await;
    let pool = SqlxManager::<Postgres>::from_url(&cluster.url())
        .unwrap()
        .with_setup_sql([
            "SET search_path = tidewater_setup, public",
            "SET application_name = 'tidewater-setup'",
        ])
        .into_pool(config(2))
        .unwrap();
    let (mut a, mut b) = (pool.get().await.unwrap(), pool.get().await.unwrap());
    for conn in [&mut a, &mut b] {
        let path: String = sqlx::query_scalar("SHOW search_path")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        assert_eq!(path, "tidewater_setup, public");
        let name: String = sqlx::query_scalar("SELECT current_setting('application_name')")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        assert_eq!(name, "tidewater-setup");
    }
    drop((a, b));

    let broken = SqlxManager::<Postgres>::from_url(&cluster.url())
        .unwrap()
        .with_setup_sql(["SET no_such_setting_without_a_dot = 1"])
        .into_pool(config(2))
        .unwrap();
    let error = broken.get().await.expect_err("the setup fails");
    let Error::Connect(cause) = &error else {
        panic!("not a permanent connect error: {error:?}")
    };
    assert_eq!(
        cause.class(),
        ErrorClass::Permanent,
        "42704 undefined object"
    );
    assert!(
        error
            .to_string()
            .contains("SET no_such_setting_without_a_dot = 1"),
        "{error}"
    );
}

/// A rotating password: connections opened before the rotation keep
/// working, new ones use the new password; a provider that fails is a
/// transient connection error that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_fetched_for_each_new_connection() {
    let cluster = shared().await;
    let role = format!("rotor_{}", NEXT.fetch_add(1, SeqCst));
    cluster.create_role(&role, "v1", None).await.unwrap();
    let secret = Arc::new(Mutex::new(String::from("v1")));
    let fetched = Arc::new(AtomicU64::new(0));
    let provider = CredentialsProvider::new({
        let (secret, fetched, role) = (secret.clone(), fetched.clone(), role.clone());
        move || {
            fetched.fetch_add(1, SeqCst);
            let password = secret.lock().unwrap().clone();
            let role = role.clone();
            async move { Ok(Credentials::password(password).with_user(role)) }
        }
    });
    // The URL's user and password are placeholders the provider replaces.
    let url = cluster.url_for("placeholder", "not-the-password", "postgres");
    let manager = SqlxManager::<Postgres>::from_url(&url)
        .unwrap()
        .with_credentials(provider);
    assert!(!format!("{manager:?}").contains("not-the-password"));
    let pool = manager.into_pool(config(2)).unwrap();
    let mut old = pool.get().await.unwrap();
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut *old)
        .await
        .unwrap();
    assert_eq!(user, role);

    cluster
        .execute(&format!("ALTER ROLE {role} PASSWORD 'v2'"))
        .await
        .unwrap();
    *secret.lock().unwrap() = "v2".into();
    let mut new = pool
        .get()
        .await
        .expect("a new connection with the new password");
    assert_ne!(new.id(), old.id());
    assert!(fetched.load(SeqCst) >= 2, "fetched for each new connection");
    for conn in [&mut old, &mut new] {
        assert_eq!(query_i64(&mut **conn, "SELECT 1").await.unwrap(), 1);
    }
    drop((old, new));

    let failing = SqlxManager::<Postgres>::from_url(&url)
        .unwrap()
        .with_credentials(CredentialsProvider::new(|| async {
            Err("the vault is sealed".into())
        }))
        .into_pool(PoolConfig {
            acquire_timeout: Duration::from_secs(2),
            ..config(2)
        })
        .unwrap();
    let error = failing.get().await.expect_err("no credentials");
    let cause = connect_cause(&error);
    assert!(
        cause.contains("the credentials provider failed: the vault is sealed"),
        "{error} / {cause}"
    );
    assert!(error.is_retryable(), "transient: {error}");
}

/// The newtype implements sqlx's `Acquire`: `acquire()` gives a pooled
/// connection; `begin()` explains why it cannot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_pool_implements_acquire() {
    async fn answer<'a>(db: impl Acquire<'a, Database = Postgres>) -> sqlx::Result<i32> {
        let mut conn = db.acquire().await?;
        sqlx::query_scalar("SELECT 42").fetch_one(&mut *conn).await
    }
    let cluster = shared().await;
    let pool: SqlxPool<Postgres> = pool(&cluster.url(), config(1)).into();
    assert_eq!(answer(&pool).await.unwrap(), 42);
    assert_eq!(pool.status().in_use, 0);
    let error = (&pool).begin().await.expect_err("begin is not supported");
    assert!(
        error.to_string().contains("acquire() and then begin()"),
        "{error}"
    );
    let mut conn = (&pool).acquire().await.unwrap();
    let tx = Connection::begin(&mut *conn).await.unwrap();
    tx.commit().await.unwrap();
}

/// Load: `tasks` tasks looping over `get()` and `SELECT 1` until stopped,
/// counting successes and failures.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(pool: &Pool<SqlxManager<Postgres>>, tasks: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let tasks = (0..tasks)
            .map(|_| {
                let (pool, stop, ok, failed) =
                    (pool.clone(), stop.clone(), ok.clone(), failed.clone());
                tokio::spawn(async move {
                    while !stop.load(SeqCst) {
                        let result = async {
                            let mut conn = pool.get().await.map_err(|e| e.to_string())?;
                            sqlx::query("SELECT 1")
                                .execute(&mut *conn)
                                .await
                                .map_err(|e| e.to_string())
                        }
                        .await;
                        match result {
                            Ok(_) => ok.fetch_add(1, SeqCst),
                            Err(_) => failed.fetch_add(1, SeqCst),
                        };
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        Self {
            stop,
            ok,
            failed,
            tasks,
        }
    }

    /// Waits until `n` more calls succeed.
    async fn until_served(&self, n: u64) -> bool {
        let target = self.ok.load(SeqCst) + n;
        eventually(async || self.ok.load(SeqCst) >= target).await
    }

    async fn stop(self) -> (u64, u64) {
        self.stop.store(true, SeqCst);
        for task in self.tasks {
            task.await.unwrap();
        }
        (self.ok.load(SeqCst), self.failed.load(SeqCst))
    }
}

fn drill_config() -> PoolConfig {
    PoolConfig {
        acquire_timeout: Duration::from_secs(5),
        ..config(5)
    }
}

/// Every slot back: nothing in use, nobody waiting, within the size.
fn assert_all_slots_back(pool: &Pool<SqlxManager<Postgres>>) {
    let status = pool.status();
    assert_eq!((status.in_use, status.waiters), (0, 0), "{status}");
    assert!(status.size <= status.max_size, "{status}");
}

/// Drill: the server restarts (fast shutdown: sessions see 57P01) under
/// load; the pool replaces its connections and serves again by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_server_restart_under_load() {
    let cluster = PgCluster::new().await.unwrap();
    let pool = pool(&cluster.url(), drill_config());
    let load = Load::start(&pool, 20);
    assert!(load.until_served(200).await, "the load runs");
    let postmaster = cluster.postmaster_pid();
    let opened = pool.stats().opened;
    cluster.restart(Shutdown::Fast).await.unwrap();
    assert_ne!(cluster.postmaster_pid(), postmaster, "the server restarted");
    assert!(
        load.until_served(500).await,
        "served again after the restart: {}",
        pool.status()
    );
    let (ok, _failed) = load.stop().await;
    assert!(ok >= 700);
    let stats = pool.stats();
    assert!(stats.opened > opened, "connections replaced: {stats:?}");
    assert!(stats.closed_total() >= 1, "the old ones were discarded");
    assert_all_slots_back(&pool);
    let mut conn = pool.get().await.unwrap();
    assert_eq!(query_i64(&mut *conn, "SELECT 1").await.unwrap(), 1);
}

/// Drill: every session is terminated on the server (`pg_terminate_backend`)
/// under load; the pool replaces them and serves again by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_sessions_terminated_under_load() {
    let cluster = PgCluster::new().await.unwrap();
    let pool = pool(&cluster.url(), drill_config());
    let load = Load::start(&pool, 20);
    assert!(load.until_served(200).await, "the load runs");
    let opened = pool.stats().opened;
    let terminated = cluster.terminate_backends().await.unwrap();
    assert!(terminated >= 1, "sessions were terminated");
    assert!(
        load.until_served(500).await,
        "served again: {}",
        pool.status()
    );
    let (_ok, _failed) = load.stop().await;
    let stats = pool.stats();
    assert!(stats.opened > opened, "connections replaced: {stats:?}");
    assert!(
        stats.closed_total() >= 1,
        "the terminated ones were discarded"
    );
    assert_all_slots_back(&pool);
}

/// The reset's probe is exact: a connection returned clean is not sent a
/// `ROLLBACK` (the server would log "there is no transaction in progress"
/// for each), while one returned inside a transaction is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_connection_gets_no_rollback() {
    let cluster = PgCluster::new().await.unwrap();
    let pool = pool(&cluster.url(), config(1));
    for _ in 0..20 {
        let mut conn = pool.get().await.unwrap();
        assert_eq!(query_i64(&mut *conn, "SELECT 1").await.unwrap(), 1);
    }
    let mut conn = pool.get().await.unwrap();
    let id = conn.id();
    // A ROLLBACK outside a transaction, which the server logs, as a marker
    // that the log is written and read.
    common::execute(&mut *conn, "ROLLBACK").await.unwrap();
    let marked = eventually(async || {
        cluster
            .log()
            .matches("there is no transaction in progress")
            .count()
            == 1
    })
    .await;
    assert!(marked, "{}", cluster.log());
    common::execute(&mut *conn, "BEGIN").await.unwrap();
    drop(conn);
    let mut conn = pool.get().await.unwrap();
    assert_eq!(conn.id(), id);
    assert!(
        no_transaction_open(&mut conn).await,
        "the open one was rolled back"
    );
    for _ in 0..20 {
        drop(conn);
        conn = pool.get().await.unwrap();
    }
    drop(conn);
    assert_eq!(
        cluster
            .log()
            .matches("there is no transaction in progress")
            .count(),
        1,
        "only the marker: {}",
        cluster.log()
    );
    assert_eq!(pool.stats().opened, 1);
}

/// `SessionReset::Tracked` hands a clean connection over without a round
/// trip (the server is asked nothing between two checkouts), and what sqlx
/// tracks itself is still cleared before the next caller's first query: the
/// rollback a dropped `Transaction` queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracked_reset_costs_no_round_trip_and_still_rolls_back_sqlx_transactions() {
    let cluster = shared().await;
    let manager = SqlxManager::<Postgres>::from_url(&cluster.url())
        .unwrap()
        .with_session_reset(tidewater_sqlx::SessionReset::Tracked);
    // No idle validation either, however slow the machine.
    let config = PoolConfig {
        validate_after: Duration::from_secs(3600),
        ..config(1)
    };
    let pool = Pool::new(manager, config).unwrap();
    let mut conn = pool.get().await.unwrap();
    let id = conn.id();
    common::execute(
        &mut *conn,
        "CREATE TEMP TABLE tracked (n BIGINT); SET application_name = 'tw-tracked'",
    )
    .await
    .unwrap();
    // The server's view of the session's last statement: a checkout
    // that asked the server anything would replace the marker.
    sqlx::query("SELECT 4711")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let mut conn = pool.get().await.unwrap();
    let last = cluster
        .execute("SELECT query FROM pg_stat_activity WHERE application_name = 'tw-tracked'")
        .await
        .unwrap();
    assert!(last.contains("SELECT 4711"), "asked the server: {last}");
    let mut tx = Connection::begin(&mut *conn).await.unwrap();
    sqlx::query("INSERT INTO tracked VALUES (1)")
        .execute(&mut *tx)
        .await
        .unwrap();
    drop(tx); // queues sqlx's ROLLBACK
    drop(conn);
    let mut conn = pool.get().await.unwrap();
    assert_eq!(conn.id(), id, "kept");
    assert!(no_transaction_open(&mut conn).await, "rolled back by sqlx");
    assert_eq!(
        query_i64(&mut *conn, "SELECT count(*) FROM tracked")
            .await
            .unwrap(),
        0
    );
    assert_eq!(pool.stats().reset_failures, 0);
}
