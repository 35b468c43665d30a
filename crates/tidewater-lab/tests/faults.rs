//! Every fault of the drill schedule, and the CPU hog run only when named,
//! against a private PostgreSQL cluster (never the shared server): each
//! must break what it says, and the server must serve again once the
//! injection returns.
//!
//! No window is defined by a sleep: the faults that last are injected with
//! `inject_until` and held until the test has seen what they do, and every
//! other wait is a poll for an event, with a deadline.

use std::future::Future;
use std::time::{Duration, Instant};

use tidewater_lab::faults::{Fault, FaultWindow, HOG, HOG_SESSIONS, HOG_SQL, inject, inject_until};
use tidewater_testkit::PgCluster;
use tokio::sync::oneshot;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

/// Bound on the whole test: it never hangs a CI run.
const TEST_BOUND: Duration = Duration::from_secs(180);
/// Bound on one poll for a condition.
const POLL_DEADLINE: Duration = Duration::from_secs(20);
/// How long a query on a stopped server is watched for an answer it must
/// not get. The server cannot answer while it is held stopped, so a
/// longer or shorter watch changes nothing but the test's length.
const NO_ANSWER_FOR: Duration = Duration::from_millis(100);

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

/// A hold for [`inject_until`] and the switch that ends it: the fault
/// lasts until the test has seen it and sends.
fn hold() -> (oneshot::Sender<()>, impl Future<Output = ()>) {
    let (release, released) = oneshot::channel();
    (release, async {
        let _ = released.await;
    })
}

/// Waits until the role `app` has no session on the server but the one of
/// `client` (asked from it, so that the question opens no session of its
/// own): a dropped client's session leaves a moment after the drop, and
/// the faults that count the sessions they end must find only this one.
async fn until_only(client: &Client) {
    let sql = "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'";
    poll_until("one session of app left", || async {
        client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) == 1
    })
    .await;
}

/// The window of a fault held from before `seen` (the test saw the
/// database broken) until after `released` (the test let go).
fn assert_held(window: &FaultWindow, seen: Instant, released: Instant) {
    assert!(
        window.broken_at <= seen && released <= window.restored_at,
        "{window:?}: broken after it was seen, or restored before it was released"
    );
}

/// The CPU hog's queries the server shows running and waiting on
/// nothing (on a core, or queued for one), asked from `watch`.
async fn hog_queries(watch: &Client) -> i64 {
    watch
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
             AND state = 'active' AND wait_event IS NULL AND query = $2",
            &[&HOG, &HOG_SQL],
        )
        .await
        .unwrap()
        .get(0)
}

/// Sessions of the CPU hog (its watcher's included) on the server.
async fn hog_sessions(watch: &Client) -> i64 {
    watch
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&HOG],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cpu_hog_runs_its_queries_until_released_then_cancels_them() {
    tokio::time::timeout(TEST_BOUND, cpu_hog())
        .await
        .expect("the CPU hog test ran past its bound");
}

async fn cpu_hog() {
    let cluster = PgCluster::new().await.unwrap();
    let watch = connect(&cluster.url()).await.unwrap();
    let sessions = i64::try_from(HOG_SESSIONS).unwrap();
    let (release, held) = hold();
    let (window, (seen, released)) =
        tokio::join!(inject_until(&cluster, Fault::CpuHog, held), async {
            poll_until("every hog query running", || async {
                hog_queries(&watch).await == sessions
            })
            .await;
            let seen = Instant::now();
            release.send(()).unwrap();
            (seen, Instant::now())
        });
    let window = window.unwrap();
    assert_eq!(window.fault, Fault::CpuHog);
    assert_held(&window, seen, released);
    assert!(
        window
            .detail
            .starts_with(&format!("{HOG_SESSIONS} sessions ran CPU-bound queries")),
        "{}",
        window.detail
    );
    // Cancelled, their sessions gone, once the injection returned; its
    // watcher leaves a moment after.
    assert_eq!(
        hog_queries(&watch).await,
        0,
        "the hog queries were cancelled"
    );
    poll_until("every hog session left", || async {
        hog_sessions(&watch).await == 0
    })
    .await;
    assert_eq!(select_one(&watch).await.unwrap(), 1);
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

    // Restart: sessions are closed, new ones work once it returns. It is
    // over at once: it has no hold.
    let client = connect(&url).await.unwrap();
    let window = inject(&cluster, Fault::Restart, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(window.fault, Fault::Restart);
    assert!(window.restored_at >= window.broken_at);
    assert!(select_one(&client).await.is_err(), "the restart closed it");
    assert_eq!(select_one(&connect(&url).await.unwrap()).await.unwrap(), 1);

    // Crash: while it is down, the session dies and nothing accepts a new
    // one; back once released.
    let client = connect(&url).await.unwrap();
    let (release, held) = hold();
    let (window, (seen, released)) =
        tokio::join!(inject_until(&cluster, Fault::Crash, held), async {
            poll_until("the crash ended the session", || async {
                client.is_closed()
            })
            .await;
            let refused = connect(&url).await;
            assert!(refused.is_err(), "a crashed server accepted a session");
            let seen = Instant::now();
            release.send(()).unwrap();
            (seen, Instant::now())
        });
    let window = window.unwrap();
    assert_held(&window, seen, released);
    assert_eq!(select_one(&connect(&url).await.unwrap()).await.unwrap(), 1);

    // Hang: a query sent while every process serving it is stopped gets no
    // answer; the same query is answered once the server resumes.
    let client = connect(&url).await.unwrap();
    let backend: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let postmaster = cluster.postmaster_pid().unwrap();
    let (release, held) = hold();
    let (window, (seen, released)) =
        tokio::join!(inject_until(&cluster, Fault::Hang, held), async {
            poll_until(
                "the postmaster and the session's backend stopped",
                || async { is_stopped(postmaster) && is_stopped(backend as u32) },
            )
            .await;
            let query = select_one(&client);
            tokio::pin!(query);
            let early = tokio::time::timeout(NO_ANSWER_FOR, &mut query).await;
            assert!(early.is_err(), "a stopped server answered: {early:?}");
            let seen = Instant::now();
            release.send(()).unwrap();
            let released = Instant::now();
            assert_eq!(query.await.unwrap(), 1, "answered after the resume");
            (seen, released)
        });
    let window = window.unwrap();
    assert_held(&window, seen, released);
    assert!(!is_stopped(postmaster), "resumed");

    // Terminate backends: every client session ends, the server stays up.
    until_only(&client).await;
    let window = inject(&cluster, Fault::TerminateBackends, Duration::ZERO)
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
    until_only(&client).await;
    let (release, held) = hold();
    let (window, (seen, released)) = tokio::join!(
        inject_until(&cluster, Fault::FillConnections, held),
        async {
            poll_until("the app's session ended", || async { client.is_closed() }).await;
            let error = connect(&url).await.expect_err("the server is full");
            assert_eq!(
                error.code(),
                Some(&SqlState::TOO_MANY_CONNECTIONS),
                "{error}"
            );
            let seen = Instant::now();
            release.send(()).unwrap();
            (seen, Instant::now())
        }
    );
    let window = window.unwrap();
    assert_held(&window, seen, released);
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
