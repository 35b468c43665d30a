//! Failure drills against private PostgreSQL clusters (never the shared
//! server): each runs a steady load of callers through the pool while the
//! server restarts, crashes, hangs, drops its sessions, fills up, refuses a
//! password, or the wire goes half-open or slow; then checks that
//!
//! - the fault happened and the pool felt it: each drill names its evidence
//!   (callers failed with the fault's kinds of error, connections were
//!   replaced, calls slowed down), and the fault is held until that evidence
//!   is seen, so a slow machine only makes the drill longer,
//! - every error named its cause, and only causes the fault can explain,
//! - every caller's wait ended by its deadline,
//! - the pool recovered by itself within a bound that follows from the
//!   configuration, and no call that started after the recovery failed,
//! - no capacity was lost: all slots are back once the load stops.
//!
//! The measured recovery times are printed (`--nocapture`) for the fault
//! matrix; the assertions check bounds derived from the configuration,
//! never a speed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use tidewater::{CloseReason, Pool, PoolConfig};
use tidewater_postgres::{PgError, PgManager, PgOptions};
use tidewater_testkit::{FaultProxy, PgCluster, Shutdown};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const CALLERS: usize = 12;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(1);
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long tidewater-postgres waits for the server to confirm a cancel
/// request before it gives up on the connection.
const CANCEL_GRACE: Duration = Duration::from_secs(5);
/// Scheduling slack for a loaded 2-core machine, added to every bound.
const SLACK: Duration = Duration::from_secs(3);
/// The longest any caller may take: acquire, then a query cut off at the
/// statement timeout, then the cancel request's grace.
const CALLER_DEADLINE: Duration = ACQUIRE_TIMEOUT
    .saturating_add(STATEMENT_TIMEOUT)
    .saturating_add(CANCEL_GRACE)
    .saturating_add(SLACK);
/// How long a fault lasts at least (under load), and at most while the
/// drill waits for its evidence.
const FAULT: Duration = Duration::from_secs(2);
const FAULT_DEADLINE: Duration = Duration::from_secs(30);

fn config(max_size: u32) -> PoolConfig {
    PoolConfig {
        max_size,
        acquire_timeout: ACQUIRE_TIMEOUT,
        connect_timeout: CONNECT_TIMEOUT,
        validation_timeout: VALIDATION_TIMEOUT,
        maintenance_interval: Duration::from_millis(100),
        ..PoolConfig::default()
    }
}

/// The bound on recovery once a fault ends: the next attempt is at most
/// one backoff ceiling away, it may take the connect timeout, the new
/// connection may be validated, and the first call may still wait out its
/// acquire timeout and a statement timeout; plus the slack.
fn recovery_bound(config: &PoolConfig) -> Duration {
    config.connect_backoff.max
        + config.connect_timeout
        + config.validation_timeout
        + config.acquire_timeout
        + STATEMENT_TIMEOUT
        + SLACK
}

fn pool_for(url: String, max_size: u32) -> Pool<PgManager> {
    let options = PgOptions {
        url,
        statement_timeout: Some(STATEMENT_TIMEOUT),
        ..PgOptions::default()
    };
    Pool::new(PgManager::new(options).unwrap(), config(max_size)).unwrap()
}

/// One caller's attempt: when it started, how long it took, its error.
#[derive(Debug)]
struct Outcome {
    started: Instant,
    took: Duration,
    error: Option<String>,
}

/// Callers that each loop get, `SELECT 1`, drop, until stopped, counting
/// failed calls as they go (for the drill to see the fault land).
struct Load {
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    /// The slowest call so far, in microseconds.
    slowest_us: Arc<AtomicU64>,
    callers: Vec<JoinHandle<Vec<Outcome>>>,
}

async fn one_call(pool: &Pool<PgManager>) -> Result<(), String> {
    let conn = pool.get().await.map_err(|error| error.to_string())?;
    conn.query_one("SELECT 1", &[])
        .await
        .map_err(|error| error.to_string())?;
    Ok(())
}

impl Load {
    fn start(pool: &Pool<PgManager>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let slowest_us = Arc::new(AtomicU64::new(0));
        let callers = (0..CALLERS)
            .map(|_| {
                let (pool, stop) = (pool.clone(), stop.clone());
                let (calls, failed) = (calls.clone(), failed.clone());
                let slowest_us = slowest_us.clone();
                tokio::spawn(async move {
                    let mut outcomes = Vec::new();
                    while !stop.load(SeqCst) {
                        let started = Instant::now();
                        let error = one_call(&pool).await.err();
                        calls.fetch_add(1, SeqCst);
                        if error.is_some() {
                            failed.fetch_add(1, SeqCst);
                        }
                        let took = started.elapsed();
                        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                        slowest_us.fetch_max(micros, SeqCst);
                        outcomes.push(Outcome {
                            started,
                            took,
                            error,
                        });
                        // Think time between requests: a steady load, not a spin.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    outcomes
                })
            })
            .collect();
        Self {
            stop,
            calls,
            failed,
            slowest_us,
            callers,
        }
    }

    /// Calls made so far.
    fn calls(&self) -> usize {
        self.calls.load(SeqCst)
    }

    /// Calls that failed so far.
    fn failed(&self) -> usize {
        self.failed.load(SeqCst)
    }

    /// The slowest call so far.
    fn slowest(&self) -> Duration {
        Duration::from_micros(self.slowest_us.load(SeqCst))
    }

    async fn stop(self) -> Vec<Outcome> {
        self.stop.store(true, SeqCst);
        let mut all = Vec::new();
        for caller in self.callers {
            all.extend(caller.await.unwrap());
        }
        all
    }
}

/// What an error says is its cause; `None` when it names none.
fn cause(error: &str) -> Option<&'static str> {
    const CAUSES: [(&str, &str); 16] = [
        ("database unavailable", "breaker open"),
        ("timed out after", "acquire timeout"),
        ("SQLSTATE 28P01", "bad password"),
        ("SQLSTATE 3D000", "unknown database"),
        ("SQLSTATE 53300", "too many connections"),
        ("SQLSTATE 57P01", "server shutting down"),
        ("SQLSTATE 57P02", "server crashed"),
        ("SQLSTATE 57P03", "server starting up"),
        (
            "query cancelled after the statement timeout",
            "statement timeout",
        ),
        ("connection closed", "connection closed"),
        ("error communicating with the server", "connection lost"),
        ("cannot reach PostgreSQL", "server unreachable"),
        ("connect_timeout expired", "connect timeout"),
        ("unexpected EOF", "connection lost"),
        ("Connection reset", "connection lost"),
        ("connection attempt timed out", "connect timeout"),
    ];
    CAUSES
        .iter()
        .find(|(text, _)| error.contains(text))
        .map(|(_, cause)| *cause)
}

/// Checks the outcomes of a drill and prints a summary for the matrix:
/// every call ended by its deadline, every error named a cause, and only
/// one of `allowed` (what the fault can explain). Returns the failures by
/// cause.
fn check(
    drill: &str,
    outcomes: &[Outcome],
    allowed: &[&str],
) -> std::collections::BTreeMap<&'static str, usize> {
    assert!(!outcomes.is_empty(), "{drill}: the load made no calls");
    let slowest = outcomes.iter().map(|o| o.took).max().unwrap();
    assert!(
        slowest <= CALLER_DEADLINE,
        "{drill}: a caller waited {slowest:?}"
    );
    let mut causes = std::collections::BTreeMap::new();
    for outcome in outcomes {
        if let Some(error) = &outcome.error {
            let named =
                cause(error).unwrap_or_else(|| panic!("{drill}: an error names no cause: {error}"));
            assert!(
                allowed.contains(&named),
                "{drill}: a caller failed with {named}, which this fault does not explain: {error}"
            );
            *causes.entry(named).or_insert(0) += 1;
        }
    }
    let failed: usize = causes.values().sum();
    println!(
        "{drill}: {} calls, {failed} failed {causes:?}, slowest {slowest:?}",
        outcomes.len()
    );
    causes
}

/// Time from `since` until a fresh `get()` and query succeed; fails past
/// the bound the pool's configuration implies.
async fn recovery(pool: &Pool<PgManager>, since: Instant) -> Duration {
    let bound = recovery_bound(pool.config());
    loop {
        if one_call(pool).await.is_ok() {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < bound,
            "no recovery within {bound:?}: {}",
            pool.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a fault must do to the pool for the drill to count: the drill
/// holds the fault (at least [`FAULT`]) until this is seen, and fails if it
/// never is.
#[derive(Clone, Copy, Debug)]
enum Evidence {
    /// Some calls failed.
    CallersFailed,
    /// Connections died under the pool and were replaced (callers may have
    /// been spared: a restart is waited out).
    ConnectionsReplaced,
    /// A call took at least this long (a slower wire: each round trip pays
    /// the added latency twice).
    CallsSlowerThan(Duration),
    /// Nothing the pool counts: the heal step checks it.
    CheckedByHeal,
}

/// The pool's counters a fault moves.
#[derive(Clone, Copy, Debug)]
struct Counters {
    broken: u64,
    opened: u64,
}

impl Counters {
    fn of(pool: &Pool<PgManager>) -> Self {
        let stats = pool.stats();
        Self {
            broken: stats.closed_by(CloseReason::Broken),
            opened: stats.opened,
        }
    }
}

impl Evidence {
    fn seen(self, load: &Load, before: Counters, now: Counters) -> bool {
        match self {
            Self::CallersFailed => load.failed() > 0,
            Self::CallsSlowerThan(floor) => load.slowest() >= floor,
            Self::ConnectionsReplaced => now.broken > before.broken && now.opened > before.opened,
            Self::CheckedByHeal => true,
        }
    }
}

/// Once the load stopped: nothing is checked out, and every slot serves.
async fn assert_all_slots_back(pool: &Pool<PgManager>) {
    let status = pool.status();
    assert_eq!((status.in_use, status.waiters), (0, 0), "{status}");
    let max = status.max_size as usize;
    let mut held = Vec::new();
    for _ in 0..max {
        held.push(
            pool.get()
                .await
                .unwrap_or_else(|error| panic!("a slot was lost: {error}")),
        );
    }
    for conn in &held {
        conn.query_one("SELECT 1", &[]).await.unwrap();
    }
}

/// Runs `fault` under load until `evidence` of it is seen (and at least
/// [`FAULT`]), then `heal`, and checks everything: only `allowed` causes of
/// failure, recovery within the configured bound, no failure after it.
async fn drill<F, H>(
    name: &str,
    pool: &Pool<PgManager>,
    fault: F,
    heal: H,
    evidence: Evidence,
    allowed: &[&str],
) where
    F: AsyncFnOnce(),
    H: AsyncFnOnce(),
{
    // Warm up: the pool at full size, serving.
    assert_all_slots_back(pool).await;
    let before = Counters::of(pool);
    let load = Load::start(pool);
    fault().await;
    hold(name, pool, &load, evidence, before).await;
    heal().await;
    finish(name, pool, load, allowed).await;
}

/// Keeps the fault on (at least [`FAULT`]) until `evidence` of it is seen;
/// fails if it never is.
async fn hold(
    name: &str,
    pool: &Pool<PgManager>,
    load: &Load,
    evidence: Evidence,
    before: Counters,
) {
    let faulted = Instant::now();
    loop {
        let held = faulted.elapsed();
        if held >= FAULT && evidence.seen(load, before, Counters::of(pool)) {
            return;
        }
        assert!(
            held < FAULT_DEADLINE,
            "{name}: the fault left no trace in {held:?} ({evidence:?}): {}",
            pool.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Once the fault is healed: waits for the recovery (within the configured
/// bound), lets the load run on a little, stops it, and checks the calls:
/// before the recovery only `allowed` causes of failure, after it none.
/// Returns the calls made before the recovery.
async fn finish(name: &str, pool: &Pool<PgManager>, load: Load, allowed: &[&str]) -> Vec<Outcome> {
    let healed = Instant::now();
    let recovered = recovery(pool, healed).await;
    // The load goes on after the recovery until every caller has had time
    // for two more calls: calls that start once the pool is back must all
    // succeed.
    let back = healed + recovered;
    let target = load.calls() + 2 * CALLERS;
    while load.calls() < target {
        assert!(
            back.elapsed() < FAULT_DEADLINE,
            "{name}: the load stalled after the recovery: {}",
            pool.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let outcomes = load.stop().await;
    let (during, after): (Vec<Outcome>, Vec<Outcome>) = outcomes
        .into_iter()
        .partition(|outcome| outcome.started < back);
    check(name, &during, allowed);
    let failed_after: Vec<&str> = after.iter().filter_map(|o| o.error.as_deref()).collect();
    assert!(
        failed_after.is_empty(),
        "{name}: {} of {} calls failed after the recovery: {:?}",
        failed_after.len(),
        after.len(),
        &failed_after[..failed_after.len().min(3)]
    );
    println!("{name}: recovered {recovered:?} after the fault ended");
    assert_all_slots_back(pool).await;
    during
}

/// Errors a dying or restarting server explains.
const SERVER_GONE: [&str; 8] = [
    "breaker open",
    "acquire timeout",
    "server shutting down",
    "server crashed",
    "server starting up",
    "connection closed",
    "connection lost",
    "server unreachable",
];

async fn nothing() {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_fast() {
    let cluster = PgCluster::new().await.unwrap();
    let pool = pool_for(cluster.url(), 5);
    drill(
        "restart (fast)",
        &pool,
        async || cluster.restart(Shutdown::Fast).await.unwrap(),
        nothing,
        Evidence::ConnectionsReplaced,
        &SERVER_GONE,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_immediate() {
    let cluster = PgCluster::new().await.unwrap();
    let pool = pool_for(cluster.url(), 5);
    drill(
        "restart (immediate)",
        &pool,
        async || cluster.restart(Shutdown::Immediate).await.unwrap(),
        nothing,
        Evidence::ConnectionsReplaced,
        &SERVER_GONE,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_crash_and_start() {
    let cluster = PgCluster::new().await.unwrap();
    let pool = pool_for(cluster.url(), 5);
    drill(
        "crash (SIGKILL) and start",
        &pool,
        async || cluster.kill().await.unwrap(),
        async || cluster.start().await.unwrap(),
        Evidence::CallersFailed,
        &SERVER_GONE,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_hung_then_resumed() {
    let cluster = PgCluster::new().await.unwrap();
    let pool = pool_for(cluster.url(), 5);
    drill(
        "hung (SIGSTOP) then resumed",
        &pool,
        async || cluster.pause().await.unwrap(),
        async || cluster.resume().await.unwrap(),
        Evidence::CallersFailed,
        &[
            "statement timeout",
            "acquire timeout",
            "connect timeout",
            "breaker open",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_sessions_terminated_on_the_server() {
    let cluster = PgCluster::new().await.unwrap();
    let pool = pool_for(cluster.url(), 5);
    drill(
        "backends terminated",
        &pool,
        async || {
            let terminated = cluster.terminate_backends().await.unwrap();
            assert!(terminated >= 1);
        },
        nothing,
        Evidence::ConnectionsReplaced,
        &[
            "connection closed",
            "connection lost",
            "server shutting down",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_full() {
    let cluster = PgCluster::new().await.unwrap();
    cluster.set_max_connections(8).await.unwrap(); // 5 for ordinary roles, 3 reserved
    cluster.create_role("app", "app", None).await.unwrap();
    let url = cluster.url_for("app", "app", "postgres");
    // Others hold every ordinary slot: the pool's attempts get "too many
    // clients" (53300) while its callers wait.
    let mut hogs = Vec::new();
    for _ in 0..5 {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        hogs.push(client);
    }
    let pool = pool_for(url, 3);
    let load = Load::start(&pool);
    let before = Counters::of(&pool);
    let name = "server full (too many clients)";
    hold(name, &pool, &load, Evidence::CallersFailed, before).await;
    assert_eq!(pool.status().size, 0, "the server had no slot to give");
    hogs.clear();
    let during = finish(
        name,
        &pool,
        load,
        &["too many connections", "breaker open", "acquire timeout"],
    )
    .await;
    assert!(
        during
            .iter()
            .any(|o| o.error.as_deref().is_some_and(|e| e.contains("53300"))),
        "the callers learned the server is full"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_database_fail_fast_without_a_retry_storm() {
    let cluster = PgCluster::new().await.unwrap();
    for (name, url, code, named) in [
        (
            "wrong password",
            cluster.url_for("postgres", "wrong", "postgres"),
            "28P01",
            "bad password",
        ),
        (
            "unknown database",
            cluster.url_for("postgres", PgCluster::PASSWORD, "nowhere"),
            "3D000",
            "unknown database",
        ),
    ] {
        let started = Instant::now();
        let pool = pool_for(url, 5);
        let load = Load::start(&pool);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let outcomes = load.stop().await;
        check(name, &outcomes, &[named, "breaker open"]);
        assert!(
            outcomes.iter().all(|o| o.error.is_some()),
            "{name}: nothing can succeed"
        );
        let fail_fast = outcomes.iter().filter(|o| o.took < ACQUIRE_TIMEOUT).count();
        assert_eq!(
            fail_fast,
            outcomes.len(),
            "{name}: every caller failed before its acquire timeout"
        );
        assert!(
            outcomes
                .iter()
                .any(|o| o.error.as_deref().is_some_and(|e| e.contains(code))),
            "{name}: the cause {code} reached the callers"
        );
        // Later attempts keep to the backoff (each at least half its
        // ceiling after the last failure), so their number has a bound
        // that follows from the configuration, whatever the speed of the
        // machine; a storm would be one per call.
        let attempts = pool.stats().connect_errors();
        let bound = pool
            .config()
            .most_connect_attempts_within(started.elapsed());
        println!(
            "{name}: {} calls, {attempts} connection attempts (the backoff allows {bound})",
            outcomes.len()
        );
        assert!(
            attempts <= bound,
            "{name}: {attempts} attempts, more than the backoff allows ({bound})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_through_a_blackhole() {
    let cluster = PgCluster::new().await.unwrap();
    let proxy = FaultProxy::start(cluster.addr()).await.unwrap();
    let pool = pool_for(cluster.url_at(proxy.addr()), 5);
    drill(
        "half-open (blackhole)",
        &pool,
        async || proxy.set_blackhole(true),
        async || {
            // The partition heals; connections stuck in it are dropped so the
            // server sees them go.
            proxy.set_blackhole(false);
            proxy.reset_all().await;
        },
        Evidence::CallersFailed,
        &[
            "statement timeout",
            "acquire timeout",
            "connect timeout",
            "breaker open",
            "connection lost",
            "connection closed",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_spike() {
    let cluster = PgCluster::new().await.unwrap();
    let proxy = FaultProxy::start(cluster.addr()).await.unwrap();
    let pool = pool_for(cluster.url_at(proxy.addr()), 5);
    drill(
        "latency spike (+100 ms each way)",
        &pool,
        async || proxy.set_latency(Duration::from_millis(100)),
        async || proxy.set_latency(Duration::ZERO),
        Evidence::CallsSlowerThan(Duration::from_millis(200)),
        &["acquire timeout"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_hanging_past_the_statement_timeout() {
    let cluster = PgCluster::new().await.unwrap();
    let pool = pool_for(cluster.url(), 5);
    let hung = Arc::new(tokio::sync::Mutex::new(None));
    drill(
        "query hangs (pg_sleep)",
        &pool,
        async || {
            let pool = pool.clone();
            *hung.lock().await = Some(tokio::spawn(async move {
                let conn = pool.get().await.unwrap();
                let error = conn.query("SELECT pg_sleep(60)", &[]).await.unwrap_err();
                let kept = matches!(
                    error,
                    PgError::QueryTimeout {
                        connection_kept: true,
                        ..
                    }
                );
                (kept, conn.query_one("SELECT 1", &[]).await.is_ok())
            }));
        },
        async || {
            let (kept, usable) = hung.lock().await.take().unwrap().await.unwrap();
            assert!(
                kept && usable,
                "the cancelled query's connection stays usable"
            );
        },
        Evidence::CheckedByHeal,
        &[],
    )
    .await;
}

/// A server (here a proxy in front of one) that accepts every session and
/// drops it as soon as the login completes: each new connection is broken
/// before it serves anyone. The pool counts each as a failed connection
/// attempt (found as it arrives when the server's goodbye is already in,
/// else when its first validation fails or when it comes back broken from
/// its first use: which one is a race with the network, so either cause
/// may be named): backoff instead of a tight loop of
/// reconnections, the breaker opens, and the callers' errors say what
/// happens.
async fn sessions_dropped_as_they_arrive(validate_after: Duration, named: &str) {
    let cluster = PgCluster::new().await.unwrap();
    let proxy = FaultProxy::start(cluster.addr()).await.unwrap();
    proxy.set_drop_after_login(true);
    let options = PgOptions {
        url: format!("{}?sslmode=disable", cluster.url_at(proxy.addr())),
        statement_timeout: Some(STATEMENT_TIMEOUT),
        ..PgOptions::default()
    };
    let config = PoolConfig {
        validate_after,
        ..config(4)
    };
    let started = Instant::now();
    let pool = Pool::new(PgManager::new(options).unwrap(), config).unwrap();
    let load = Load::start(&pool);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let outcomes = load.stop().await;

    let attempts = proxy.accepted();
    let bound = pool
        .config()
        .most_connect_attempts_within(started.elapsed());
    let errors: Vec<&str> = outcomes.iter().filter_map(|o| o.error.as_deref()).collect();
    println!(
        "sessions dropped after login (validate_after {validate_after:?}): {} calls, {} failed, \
         {attempts} connection attempts in 2 s (the backoff allows {bound})",
        outcomes.len(),
        errors.len()
    );
    assert!(
        !errors.is_empty() && errors.len() == outcomes.len(),
        "no call can succeed"
    );
    assert!(attempts >= 3, "the pool tried: {attempts}");
    assert!(
        attempts <= bound,
        "{attempts} connection attempts in 2 s, more than the backoff allows ({bound})"
    );
    assert!(pool.stats().breaker_opened >= 1, "{}", pool.status());
    assert!(
        errors.iter().any(|error| {
            error.contains(named) || error.contains("every new connection arrived broken")
        }),
        "the errors name the cause ({named}, or arrived broken): {:?}",
        &errors[..errors.len().min(3)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_dropped_as_they_arrive_back_off_and_open_the_breaker() {
    sessions_dropped_as_they_arrive(
        PoolConfig::default().validate_after,
        "every new connection broke in its first use",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_dropped_as_they_arrive_fail_their_first_validation() {
    sessions_dropped_as_they_arrive(
        Duration::ZERO,
        "every new connection failed its first validation",
    )
    .await;
}
