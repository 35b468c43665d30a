//! Every fault of the drill schedule against a private PostgreSQL cluster
//! (never the shared server): each must break what it says, and the server
//! must serve again once `inject` returns.

use std::future::Future;
use std::time::{Duration, Instant};

use tidewater_lab::faults::{Fault, inject};
use tidewater_testkit::PgCluster;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

/// Bound on the whole test: it never hangs a CI run.
const TEST_BOUND: Duration = Duration::from_secs(180);
/// Bound on one poll for a condition.
const POLL_DEADLINE: Duration = Duration::from_secs(20);
const HOLD: Duration = Duration::from_millis(500);
/// Longer for the fill, so the test can try to connect while it holds.
const FILL_HOLD: Duration = Duration::from_secs(3);

async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

async fn select_one(client: &Client) -> Result<i32, tokio_postgres::Error> {
    Ok(client.query_one("SELECT 1", &[]).await?.get(0))
}

/// Polls `check` every 10 ms until it holds, failing after [`POLL_DEADLINE`].
async fn poll_until<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + POLL_DEADLINE;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {POLL_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether process `pid` is stopped (SIGSTOP), from /proc.
fn is_stopped(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // `pid (comm) state ...`; comm may hold spaces, so read after the last ')'.
    stat.rsplit(')')
        .next()
        .is_some_and(|rest| rest.trim_start().starts_with('T'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_breaks_the_server_then_restores_it() {
    tokio::time::timeout(TEST_BOUND, every_fault())
        .await
        .expect("the fault test ran past its bound");
}

async fn every_fault() {
    let cluster = PgCluster::new().await.unwrap();
    // Few slots, so the fill takes little time: 9 for ordinary roles.
    cluster.set_max_connections(12).await.unwrap();
    cluster.create_role("app", "app", None).await.unwrap();
    let url = cluster.url_for("app", "app", "postgres");

    // Restart: sessions are closed, new ones work once it returns.
    let client = connect(&url).await.unwrap();
    let window = inject(&cluster, Fault::Restart, HOLD).await.unwrap();
    assert_eq!(window.fault, Fault::Restart);
    assert!(window.restored_at >= window.broken_at);
    assert!(select_one(&client).await.is_err(), "the restart closed it");
    assert_eq!(select_one(&connect(&url).await.unwrap()).await.unwrap(), 1);

    // Crash: down for the hold time, then back.
    let client = connect(&url).await.unwrap();
    let window = inject(&cluster, Fault::Crash, HOLD).await.unwrap();
    assert!(window.outage() >= HOLD, "{window:?}");
    assert!(select_one(&client).await.is_err(), "the crash ended it");
    assert_eq!(select_one(&connect(&url).await.unwrap()).await.unwrap(), 1);

    // Hang: nothing answers while stopped; the same session answers after.
    let client = connect(&url).await.unwrap();
    let postmaster = cluster.postmaster_pid().unwrap();
    let (window, ()) = tokio::join!(inject(&cluster, Fault::Hang, HOLD), async {
        poll_until("the postmaster stopped", || async {
            is_stopped(postmaster)
        })
        .await;
        let query = tokio::time::timeout(Duration::from_millis(100), select_one(&client)).await;
        assert!(query.is_err(), "a paused server answered: {query:?}");
    });
    let window = window.unwrap();
    assert!(window.outage() >= HOLD, "{window:?}");
    assert!(!is_stopped(postmaster), "resumed");
    assert_eq!(select_one(&client).await.unwrap(), 1);

    // Terminate backends: every client session ends, the server stays up.
    let window = inject(&cluster, Fault::TerminateBackends, HOLD)
        .await
        .unwrap();
    assert!(
        window.detail.starts_with("1 sessions ended"),
        "{}",
        window.detail
    );
    let error = select_one(&client).await.unwrap_err();
    assert!(
        error.code() == Some(&SqlState::ADMIN_SHUTDOWN) || error.is_closed(),
        "{error}"
    );
    assert_eq!(select_one(&connect(&url).await.unwrap()).await.unwrap(), 1);

    // Fill connections: the app's session is ended and it cannot open
    // another until the side client lets go.
    let client = connect(&url).await.unwrap();
    let (window, ()) = tokio::join!(inject(&cluster, Fault::FillConnections, FILL_HOLD), async {
        poll_until("the app's session ended", || async { client.is_closed() }).await;
        let error = connect(&url).await.expect_err("the server is full");
        assert_eq!(
            error.code(),
            Some(&SqlState::TOO_MANY_CONNECTIONS),
            "{error}"
        );
    });
    let window = window.unwrap();
    assert!(window.outage() >= FILL_HOLD, "{window:?}");
    assert!(
        window.detail.contains("1 others ended") && !window.detail.contains("not retaken"),
        "{}",
        window.detail
    );
    assert_eq!(select_one(&connect(&url).await.unwrap()).await.unwrap(), 1);
    let left = cluster
        .execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tidewater-lab-fill'",
        )
        .await
        .unwrap();
    assert_eq!(left, "0", "the side client let go of every session");
}
