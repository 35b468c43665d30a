//! Breaking the server and restoring it: [`inject`] and [`inject_until`],
//! and the faults that need no side client of their own (restart, crash,
//! hang, terminate backends). The fill and CPU hog faults are in their
//! own modules.

use std::time::{Duration, Instant};

use tidewater_testkit::{PgCluster, Shutdown};

use super::fill::fill_connections;
use super::hog::cpu_hog;
use super::side::{side_session, until_gone};
use super::{Fault, FaultError, FaultWindow};

/// Breaks `cluster` the way `fault` says, holds it broken for `hold` (the
/// faults that [`hold`](Fault::holds)), restores it, and returns when it
/// broke and when the database was available again.
///
/// # Errors
/// When a control of the cluster fails (it does not start again, say), or
/// the side client of [`FillConnections`](Fault::FillConnections) cannot
/// connect or fill the server, or the one of [`CpuHog`](Fault::CpuHog)
/// finds no free slot or its queries do not start or end.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use tidewater_lab::faults::{Fault, inject};
///
/// let cluster = tidewater_testkit::PgCluster::new().await?;
/// let window = inject(&cluster, Fault::Crash, Duration::from_secs(2)).await?;
/// assert!(window.outage() >= Duration::from_secs(2));
/// # Ok(())
/// # }
/// ```
pub async fn inject(
    cluster: &PgCluster,
    fault: Fault,
    hold: Duration,
) -> Result<FaultWindow, FaultError> {
    inject_held(cluster, fault, tokio::time::sleep(hold), Some(hold)).await
}

/// [`inject`], holding the faults that [`hold`](Fault::holds) until
/// `released` completes instead of for a fixed time: a test can keep the
/// database broken until it has seen what the fault does, however slowly
/// it looks. The others ignore `released`.
///
/// # Errors
/// As [`inject`].
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tidewater_lab::faults::{Fault, inject_until};
///
/// let cluster = tidewater_testkit::PgCluster::new().await?;
/// let (release, released) = tokio::sync::oneshot::channel::<()>();
/// let (window, ()) = tokio::join!(
///     inject_until(&cluster, Fault::Hang, async { let _ = released.await; }),
///     async {
///         // ... see that the server does not answer, then:
///         let _ = release.send(());
///     },
/// );
/// println!("hung for {:?}", window?.outage());
/// # Ok(())
/// # }
/// ```
pub async fn inject_until(
    cluster: &PgCluster,
    fault: Fault,
    released: impl Future<Output = ()>,
) -> Result<FaultWindow, FaultError> {
    inject_held(cluster, fault, released, None).await
}

/// [`inject`] and [`inject_until`]: the faults that hold are held until
/// `released` completes; the window's detail gives `hold` as their hold,
/// or without it the time they were held, to the millisecond.
async fn inject_held(
    cluster: &PgCluster,
    fault: Fault,
    released: impl Future<Output = ()>,
    hold: Option<Duration>,
) -> Result<FaultWindow, FaultError> {
    let held = |since: Instant| held_for(hold, since);
    let window = |broken_at, restored_at, detail: String| FaultWindow {
        fault,
        broken_at,
        restored_at,
        detail,
    };
    match fault {
        Fault::Restart => {
            let broken_at = Instant::now();
            cluster.stop(Shutdown::Fast).await?;
            let restored_at = start(cluster).await?;
            Ok(window(broken_at, restored_at, "fast restart".to_owned()))
        }
        Fault::Crash => {
            let broken_at = Instant::now();
            cluster.kill().await?;
            released.await;
            let detail = format!("down {:?} after SIGKILL", held(broken_at));
            let restored_at = start(cluster).await?;
            Ok(window(broken_at, restored_at, detail))
        }
        Fault::Hang => {
            let broken_at = Instant::now();
            cluster.pause().await?;
            released.await;
            cluster.resume().await?;
            let detail = format!("stopped {:?}", held(broken_at));
            Ok(window(broken_at, Instant::now(), detail))
        }
        Fault::TerminateBackends => terminate_backends(cluster).await,
        Fault::FillConnections => fill_connections(cluster, released).await,
        Fault::CpuHog => cpu_hog(cluster, released, hold).await,
    }
}

/// The hold a report gives: `hold` when the fault was held for a fixed
/// time, else the time since `since`, to the millisecond.
pub(super) fn held_for(hold: Option<Duration>, since: Instant) -> Duration {
    hold.unwrap_or_else(|| {
        Duration::from_millis(u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX))
    })
}

/// Bound on waiting for a starting server to accept a connection.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// Starts the server and returns when it first accepted a connection: a
/// side session tries every few milliseconds while `pg_ctl start` waits
/// (which only looks every 100 ms).
async fn start(cluster: &PgCluster) -> Result<Instant, FaultError> {
    let starting = cluster.start();
    let accepted = first_accepted(cluster);
    tokio::pin!(starting, accepted);
    let (mut started, mut up) = (false, None);
    loop {
        tokio::select! {
            result = &mut starting, if !started => {
                result?;
                started = true;
            }
            result = &mut accepted, if up.is_none() => up = Some(result?),
        }
        if let (true, Some(up)) = (started, up) {
            return Ok(up);
        }
    }
}

/// When a side session first connected (and ran `SELECT 1`), trying every
/// 5 ms for at most [`START_DEADLINE`].
async fn first_accepted(cluster: &PgCluster) -> Result<Instant, FaultError> {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if let Ok(Some(session)) = side_session(cluster).await {
            let accepted = Instant::now();
            if session.client.simple_query("SELECT 1").await.is_ok() {
                return Ok(accepted);
            }
        }
        if Instant::now() > deadline {
            return Err(FaultError::TimedOut(format!(
                "the server accepted no connection within {START_DEADLINE:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// [`Fault::TerminateBackends`], from a side session: every other client
/// session is signalled at once, then the side session watches until all
/// have exited. The window runs from the signals to the last exit.
async fn terminate_backends(cluster: &PgCluster) -> Result<FaultWindow, FaultError> {
    let session = side_session(cluster)
        .await?
        .ok_or(FaultError::Full("no session to end the others from"))?;
    let broken_at = Instant::now();
    let ended: Vec<i32> = session
        .client
        .query_one(
            // Materialized: the filter runs before any session is ended
            // (the planner may otherwise order the conditions so that
            // this very session is signalled too).
            "WITH others AS MATERIALIZED (SELECT pid FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()) \
             SELECT coalesce(array_agg(pid), '{}') FROM others WHERE pg_terminate_backend(pid)",
            &[],
        )
        .await?
        .get(0);
    until_gone(
        &session.client,
        "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)",
        &[&ended],
        "ended sessions",
    )
    .await?;
    Ok(FaultWindow {
        fault: Fault::TerminateBackends,
        broken_at,
        restored_at: Instant::now(),
        detail: format!("{} sessions ended", ended.len()),
    })
}
